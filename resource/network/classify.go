package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
)

// Kind is what a pod interface is, which decides how it reaches the VM.
type Kind string

const (
	// KindVeth is one end of a veth pair, what most CNI plugins give a pod.
	KindVeth Kind = "veth"
	// KindMacvlan is a macvlan whose lower device is outside the namespace.
	KindMacvlan Kind = "macvlan"
	// KindIPVlan is an ipvlan; its frames carry the master's MAC.
	KindIPVlan Kind = "ipvlan"
	// KindTap is a TAP somebody else made in the namespace for a VM; it is
	// attached to the VM as it is, whatever the model.
	KindTap Kind = "tap"
)

// ownName matches the devices Setup makes, so a scan never mistakes them
// for pod interfaces (a second Setup, or one after a crash).
var ownName = regexp.MustCompile(`^(tap|mvtap)[0-9]+_joey$`)

// tapName and macvtapName name the device of the i-th endpoint.
func tapName(i int) string     { return fmt.Sprintf("tap%d_joey", i) }
func macvtapName(i int) string { return fmt.Sprintf("mvtap%d_joey", i) }

// host is what classification and setup take from the machine beyond the
// namespace's netlink, separate so tests can stand in a fake sysfs or a
// vhost-net device.
type host struct {
	// sysfs runs fn with a sysfs (and a private scratch directory) that
	// shows the network namespace at the path.
	sysfs func(netnsPath string, fn func(sysfs, scratch string) error) error
	// vhostNet is the vhost-net character device.
	vhostNet string
	// vhostUserDir holds the vhost-user sockets of a userspace switch, one
	// directory "vhostuser_<ip>" per interface address (Kata's convention).
	vhostUserDir string
}

var defaultHost = host{
	sysfs:        withNetNSSysfs,
	vhostNet:     "/dev/vhost-net",
	vhostUserDir: "/tmp",
}

// classify decides the kind of the pod interface link, or explains why it
// cannot reach the VM. Errors for kinds joey does not carry wrap
// errdefs.ErrNotImplemented and name the interface.
func (hst host) classify(netnsPath string, link netlink.Link, addrs []netlink.Addr, model Model) (Kind, error) {
	name := link.Attrs().Name
	if sock, err := hst.vhostUserSocket(addrs); err != nil {
		return "", fmt.Errorf("interface %q: look for a vhost-user socket: %w", name, err)
	} else if sock != "" {
		return "", fmt.Errorf("interface %q is served by the vhost-user socket %s: vhost-user endpoints are not implemented; give the pod a veth instead: %w",
			name, sock, errdefs.ErrNotImplemented)
	}
	var kind Kind
	switch l := link.(type) {
	case *netlink.Veth:
		kind = KindVeth
	case *netlink.Macvtap:
		return "", fmt.Errorf("interface %q is a macvtap joey did not make: attaching an existing macvtap is not implemented; give the pod a veth instead: %w",
			name, errdefs.ErrNotImplemented)
	case *netlink.Macvlan:
		kind = KindMacvlan
	case *netlink.IPVlan:
		kind = KindIPVlan
	case *netlink.Tuntap:
		if l.Mode != netlink.TUNTAP_MODE_TAP {
			return "", fmt.Errorf("interface %q is a TUN device: it carries IP packets, but a virtio-net NIC needs Ethernet frames; make it a TAP: %w",
				name, errdefs.ErrNotImplemented)
		}
		return KindTap, nil
	default:
		return "", hst.unsupported(netnsPath, link)
	}
	if model == ModelMacvtap && kind != KindVeth {
		// A macvtap on a macvlan or ipvlan would sit on their lower device,
		// which lives outside the pod's namespace.
		return "", fmt.Errorf("interface %q is a %s: the macvtap model only carries veth interfaces; use the tcfilter model: %w",
			name, kind, errdefs.ErrNotImplemented)
	}
	return kind, nil
}

// unsupported explains a link of no kind classify knows: a physical NIC
// (it has a parent device in sysfs, a VFIO candidate) or a virtual kind.
func (hst host) unsupported(netnsPath string, link netlink.Link) error {
	name := link.Attrs().Name
	var dev, bus string
	err := hst.sysfs(netnsPath, func(sysfs, _ string) error {
		var err error
		dev, bus, err = parentDevice(sysfs, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("interface %q: %w", name, err)
	}
	if dev != "" {
		return fmt.Errorf("interface %q is a physical device (%s %s): passing a NIC to the VM (VFIO) is not implemented; move it out of the pod's network namespace: %w",
			name, bus, dev, errdefs.ErrNotImplemented)
	}
	return fmt.Errorf("interface %q is a %s link: joey carries veth, macvlan, ipvlan and TAP interfaces only: %w",
		name, link.Type(), errdefs.ErrNotImplemented)
}

// parentDevice returns the device behind link name (its PCI address, say)
// and the bus it is on, or "" for a purely virtual link.
func parentDevice(sysfs, name string) (dev, bus string, err error) {
	devLink := filepath.Join(sysfs, "class", "net", name, "device")
	target, err := os.Readlink(devLink)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("read %s: %w", devLink, err)
	}
	bus = "unknown-bus"
	if sub, err := os.Readlink(filepath.Join(devLink, "subsystem")); err == nil {
		bus = filepath.Base(sub)
	}
	return filepath.Base(target), bus, nil
}

// vhostUserSocket returns the socket a userspace switch made for one of
// addrs, or "".
func (hst host) vhostUserSocket(addrs []netlink.Addr) (string, error) {
	if hst.vhostUserDir == "" {
		return "", nil
	}
	for _, a := range addrs {
		dir := filepath.Join(hst.vhostUserDir, "vhostuser_"+a.IP.String())
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		for _, e := range entries {
			if e.Type()&fs.ModeSocket != 0 {
				return filepath.Join(dir, e.Name()), nil
			}
		}
	}
	return "", nil
}
