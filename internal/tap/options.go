package tap

import (
	"fmt"
	"net"
	"strings"
)

// Kernel limits the options are checked against (include/uapi/linux/if.h,
// drivers/net/tun.c), so a bad value fails with a message naming the field
// instead of an EINVAL from an ioctl.
const (
	maxNameLen = 15 // IFNAMSIZ - 1
	maxQueues  = 256
	minMTU     = 68         // ETH_MIN_MTU, tun's min_mtu
	maxMTU     = 65535 - 14 // tun's MAX_MTU less the Ethernet header of a TAP
)

// Options describes the TAP to create or open.
type Options struct {
	// Name of the link. Create accepts "" and lets the kernel choose
	// (tap0, tap1, …); Open needs it.
	Name string
	// Queues is the number of queue files: 1 gives a single-queue TAP,
	// more gives IFF_MULTI_QUEUE with one file per queue (one per vCPU
	// for a multi-queue virtio-net). Opening an existing TAP must use the
	// mode it was created with.
	Queues int
	// MTU to set; 0 leaves the link's MTU as it is (1500 for a new TAP).
	MTU int
	// MAC of the host side of the link; nil leaves it as it is (random for
	// a new TAP). The guest's NIC has its own MAC.
	MAC net.HardwareAddr
	// VnetHdr adds IFF_VNET_HDR: every frame carries a virtio-net header,
	// which QEMU (vnet_hdr=on) and the built-in VMM use for offloads.
	VnetHdr bool
	// Persist makes the link outlive its files (TUNSETPERSIST): Close
	// leaves it and Delete removes it. Only Create uses it.
	Persist bool
	// NetNS is the path of the network namespace the TAP lives in (for
	// example /var/run/netns/NAME or /proc/PID/ns/net); "" is the
	// namespace of the calling process.
	NetNS string
}

func (o Options) validate(needName bool) error {
	if err := validateName(o.Name, needName); err != nil {
		return err
	}
	if o.Queues < 1 || o.Queues > maxQueues {
		return fmt.Errorf("tap: Queues %d out of range 1..%d (1 is a single-queue TAP)", o.Queues, maxQueues)
	}
	if o.MTU != 0 && (o.MTU < minMTU || o.MTU > maxMTU) {
		return fmt.Errorf("tap: MTU %d out of range %d..%d (0 keeps the link's MTU)", o.MTU, minMTU, maxMTU)
	}
	if o.MAC != nil {
		if len(o.MAC) != 6 {
			return fmt.Errorf("tap: MAC %q is %d bytes, want a 6-byte Ethernet address", o.MAC, len(o.MAC))
		}
		if o.MAC[0]&1 != 0 {
			return fmt.Errorf("tap: MAC %s is a multicast address; clear the lowest bit of the first byte", o.MAC)
		}
		if string(o.MAC) == "\x00\x00\x00\x00\x00\x00" {
			return fmt.Errorf("tap: MAC %s is all zeros; leave MAC nil for a random one", o.MAC)
		}
	}
	return nil
}

// validateName applies the kernel's rules for link names (dev_valid_name)
// plus one of ours: no %d templates, because a caller that wants the kernel
// to choose leaves the name empty.
func validateName(name string, need bool) error {
	switch {
	case name == "":
		if need {
			return fmt.Errorf("tap: Name is empty; give the name of an existing TAP")
		}
		return nil
	case len(name) > maxNameLen:
		return fmt.Errorf("tap: name %q longer than %d bytes", name, maxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("tap: name %q is not a valid link name", name)
	case strings.ContainsAny(name, "/:% \t\n\r\v\f"):
		return fmt.Errorf("tap: name %q contains '/', ':', '%%' or white space; use letters, digits, '-' or '_'", name)
	}
	return nil
}
