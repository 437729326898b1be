package network

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// attachMacvtap joins pod to the VM through a new macvtap named name in
// passthru mode: the macvtap takes the pod interface's MAC (the guest's
// NIC has it too) and every frame the interface receives, and what the VM
// writes leaves through the interface. Bridge mode would need the macvtap
// to have a MAC other than its lower device's, i.e. changing the pod
// interface's MAC, which the CNI plugin owns.
func (hst host) attachMacvtap(ctx context.Context, h *netlink.Handle, e *Endpoint, name string, pod netlink.Link, opts Options) error {
	e.device = name
	if err := e.record(ctx, opts); err != nil {
		return err
	}
	// From NewLinkAttrs: a zero TxQLen would be sent as 0, and the
	// kernel sizes each queue's ring by it, dropping every frame.
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.ParentIndex, attrs.MTU = name, pod.Attrs().Index, pod.Attrs().MTU
	mv := &netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: attrs, Mode: netlink.MACVLAN_MODE_PASSTHRU}}
	if err := h.LinkAdd(mv); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add macvtap %q: %w (a device of an earlier sandbox in this namespace was not cleaned up: run the shim's delete for it)", name, err)
		}
		return fmt.Errorf("add macvtap %q on %q: %w", name, pod.Attrs().Name, err)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("look up macvtap %q: %w", name, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.macvtap = link.Attrs().Index
	err = hst.sysfs(opts.NetNS, func(sysfs, scratch string) error {
		if err := disableIPv6(name); err != nil {
			return err
		}
		var err error
		e.files, err = openMacvtap(sysfs, scratch, name, e.queues)
		return err
	})
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set macvtap %q up: %w", name, err)
	}
	return nil
}

// openMacvtap opens queues files of the macvtap name's character device.
// Its node is made here, in scratch: without udev there is none, and a
// /dev/tapN that devtmpfs made may belong to a macvtap of another network
// namespace with the same interface index. The node is removed again;
// the files keep the device.
func openMacvtap(sysfs, scratch, name string, queues int) (_ []*os.File, retErr error) {
	dir := filepath.Join(sysfs, "class", "net", name, "macvtap")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("find the character device of macvtap %q: %w", name, err)
	}
	if len(entries) != 1 {
		return nil, fmt.Errorf("find the character device of macvtap %q: %d entries in %s, want 1", name, len(entries), dir)
	}
	devFile := filepath.Join(dir, entries[0].Name(), "dev")
	raw, err := os.ReadFile(devFile)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", devFile, err)
	}
	dev, err := parseDevNumber(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", devFile, err)
	}
	node := filepath.Join(scratch, entries[0].Name())
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(dev)); err != nil {
		return nil, fmt.Errorf("mknod %s: %w", node, err)
	}
	defer os.Remove(node)
	var files []*os.File
	defer func() {
		if retErr != nil {
			closeAll(files)
		}
	}()
	for q := range queues {
		// Each open of a macvtap's device adds a queue.
		fd, err := unix.Open(node, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open macvtap %q queue %d: %w", name, q, err)
		}
		files = append(files, os.NewFile(uintptr(fd), "/dev/"+entries[0].Name()))
	}
	return files, nil
}

// parseDevNumber parses sysfs's "MAJOR:MINOR".
func parseDevNumber(s string) (uint64, error) {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("device number %q is not MAJOR:MINOR", s)
	}
	ma, err := strconv.ParseUint(maj, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("device number %q: %w", s, err)
	}
	mi, err := strconv.ParseUint(min, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("device number %q: %w", s, err)
	}
	return unix.Mkdev(uint32(ma), uint32(mi)), nil
}
