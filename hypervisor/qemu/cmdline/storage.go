package cmdline

import (
	"fmt"
	"strconv"
	"strings"
)

// FSDev is a local -fsdev for virtio-9p. Files are accessed with QEMU's own
// credentials (security_model=none), and inode numbers from different host
// filesystems under Path are remapped so they cannot collide in the guest
// (multidevs=remap): a container's rootfs and its bind mounts share one
// export.
type FSDev struct {
	ID       string
	Path     string
	ReadOnly bool
}

// Args implements Option.
func (f FSDev) Args(*FDs) ([]string, error) {
	if err := checkID("fsdev", f.ID); err != nil {
		return nil, err
	}
	if err := checkPath("fsdev "+f.ID, "path", f.Path); err != nil {
		return nil, err
	}
	p := props{"id=" + f.ID, "path=" + escape(f.Path), "security_model=none", "multidevs=remap"}
	if f.ReadOnly {
		p = append(p, "readonly=on")
	}
	return []string{"-fsdev", p.join("local")}, nil
}

// DeviceVirtio9P exports an FSDev to the guest under MountTag.
type DeviceVirtio9P struct {
	ID        string
	FSDev     string
	MountTag  string
	Transport Transport
	Bus       string
}

// Args implements Option.
func (d DeviceVirtio9P) Args(*FDs) ([]string, error) {
	drv, err := d.Transport.driver("virtio-9p")
	if err != nil {
		return nil, err
	}
	if err := checkID(drv, d.ID); err != nil {
		return nil, err
	}
	if err := checkRefs(drv+" "+d.ID, "fsdev", d.FSDev); err != nil {
		return nil, err
	}
	if d.MountTag == "" || len(d.MountTag) > 31 {
		return nil, fmt.Errorf("%s %s: mount tag %q must be 1-31 bytes", drv, d.ID, d.MountTag)
	}
	p := props{"id=" + d.ID, "fsdev=" + d.FSDev, "mount_tag=" + escape(d.MountTag)}
	p.add("bus", d.Bus)
	return []string{"-device", p.join(drv)}, nil
}

// DeviceVhostUserFS is virtio-fs served by a vhost-user daemon (virtiofsd)
// reached through a client ChardevSocket. Guest RAM must be shared
// (MemoryBackendFile with Share).
type DeviceVhostUserFS struct {
	ID        string
	Chardev   string
	Tag       string
	QueueSize int // 0: QEMU's default
	Transport Transport
	Bus       string
}

// Args implements Option.
func (d DeviceVhostUserFS) Args(*FDs) ([]string, error) {
	drv, err := d.Transport.driver("vhost-user-fs")
	if err != nil {
		return nil, err
	}
	if err := checkID(drv, d.ID); err != nil {
		return nil, err
	}
	if err := checkRefs(drv+" "+d.ID, "chardev", d.Chardev); err != nil {
		return nil, err
	}
	if d.Tag == "" || len(d.Tag) > 36 {
		return nil, fmt.Errorf("%s %s: tag %q must be 1-36 bytes", drv, d.ID, d.Tag)
	}
	p := props{"id=" + d.ID, "chardev=" + d.Chardev, "tag=" + escape(d.Tag)}
	if d.QueueSize != 0 {
		p.add("queue-size", strconv.Itoa(d.QueueSize))
	}
	p.add("bus", d.Bus)
	return []string{"-device", p.join(drv)}, nil
}

// Blockdev is a raw image or block device opened through the file driver.
type Blockdev struct {
	NodeName string
	Path     string
	ReadOnly bool
}

// Args implements Option.
func (b Blockdev) Args(*FDs) ([]string, error) {
	if err := checkID("blockdev", b.NodeName); err != nil {
		return nil, err
	}
	if err := checkPath("blockdev "+b.NodeName, "path", b.Path); err != nil {
		return nil, err
	}
	// The inline file child inherits read-only from the raw node.
	p := props{"driver=raw", "node-name=" + b.NodeName, "read-only=" + onOff(b.ReadOnly),
		"file.driver=file", "file.filename=" + escape(b.Path)}
	return []string{"-blockdev", strings.Join(p, ",")}, nil
}

// DeviceVirtioBlk is the guest's disk on a Blockdev.
type DeviceVirtioBlk struct {
	ID    string
	Drive string // the Blockdev's node name
	// Serial is what the guest reads in /sys/block/vdX/serial (≤ 20 bytes).
	Serial    string
	Transport Transport
	Bus       string
}

// Args implements Option.
func (d DeviceVirtioBlk) Args(*FDs) ([]string, error) {
	drv, err := d.Transport.driver("virtio-blk")
	if err != nil {
		return nil, err
	}
	if err := checkID(drv, d.ID); err != nil {
		return nil, err
	}
	if err := checkRefs(drv+" "+d.ID, "drive", d.Drive); err != nil {
		return nil, err
	}
	if len(d.Serial) > 20 {
		return nil, fmt.Errorf("%s %s: serial %q is longer than 20 bytes", drv, d.ID, d.Serial)
	}
	p := props{"id=" + d.ID, "drive=" + d.Drive}
	p.add("serial", escape(d.Serial))
	p.add("bus", d.Bus)
	return []string{"-device", p.join(drv)}, nil
}
