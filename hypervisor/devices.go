package hypervisor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// SharedFS is a host directory the guest mounts by Tag.
type SharedFS struct {
	Tag  string
	Kind SharedFSKind
	// HostPath is the shared directory (9p).
	HostPath string
	// Socket is the vhost-user socket of a virtiofsd the caller runs
	// (virtio-fs): the daemon, not the VMM, serves the directory.
	Socket string
	// ReadOnly refuses guest writes (9p only: a virtiofsd decides itself).
	ReadOnly bool
}

// BlockDevice is a disk image or block device given to the guest.
type BlockDevice struct {
	// ID names the device: the guest sees it as the disk's serial number,
	// and RemoveDevice takes it. At most 20 characters.
	ID       string
	Path     string
	ReadOnly bool
}

// NetDevice is a virtio-net interface backed by a TAP device.
type NetDevice struct {
	// ID names the device for RemoveDevice; at most 20 characters.
	ID string
	// TapFiles are the TAP's queues (one file per queue). Ownership passes
	// to the driver, which closes them.
	TapFiles []*os.File
	// VhostFiles are open /dev/vhost-net files, one per queue, or none.
	// Ownership passes to the driver too.
	VhostFiles []*os.File
	MAC        net.HardwareAddr
	// MTU the guest is told to use; 0 leaves the default.
	MTU int
}

// Close closes the files of the device. Drivers call it once they hold
// their own copies, or to honour ownership when they fail.
func (n NetDevice) Close() error {
	var errs []error
	for _, f := range append(append([]*os.File(nil), n.TapFiles...), n.VhostFiles...) {
		if f == nil {
			continue
		}
		if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func validDeviceID(id string) error {
	if !validName(id) || len(id) > maxDeviceIDLen {
		return fmt.Errorf("id %q must be 1-%d letters, digits, '-', '_' or '.'", id, maxDeviceIDLen)
	}
	return nil
}

func (fs SharedFS) validate() error {
	switch fs.Kind {
	case SharedFS9P:
		// The virtio-9p mount tag is at most 31 bytes.
		if fs.Tag == "" || len(fs.Tag) > 31 {
			return fmt.Errorf("9p tag %q must be 1-31 bytes", fs.Tag)
		}
		if !filepath.IsAbs(fs.HostPath) {
			return fmt.Errorf("9p %q: host path %q must be absolute", fs.Tag, fs.HostPath)
		}
	case SharedFSVirtioFS:
		// The virtio-fs config space holds a 36-byte tag.
		if fs.Tag == "" || len(fs.Tag) > 36 {
			return fmt.Errorf("virtio-fs tag %q must be 1-36 bytes", fs.Tag)
		}
		if !filepath.IsAbs(fs.Socket) {
			return fmt.Errorf("virtio-fs %q: socket %q must be the absolute path of virtiofsd's socket", fs.Tag, fs.Socket)
		}
		if fs.ReadOnly {
			return fmt.Errorf("virtio-fs %q: read-only is virtiofsd's setting, not the device's: unset ReadOnly and start virtiofsd read-only", fs.Tag)
		}
	default:
		return fmt.Errorf("kind %q is not one of 9p, virtio-fs", fs.Kind)
	}
	return nil
}

// Validate checks the device on its own (hot-added devices are checked
// this way too).
func (b BlockDevice) Validate() error {
	if err := validDeviceID(b.ID); err != nil {
		return err
	}
	if !filepath.IsAbs(b.Path) {
		return fmt.Errorf("block %q: path %q must be absolute", b.ID, b.Path)
	}
	return nil
}

// Validate checks the device on its own (hot-added devices are checked
// this way too).
func (n NetDevice) Validate() error {
	if err := validDeviceID(n.ID); err != nil {
		return err
	}
	if err := n.validate(); err != nil {
		return fmt.Errorf("net %q: %w", n.ID, err)
	}
	return nil
}

func (n NetDevice) validate() error {
	if len(n.TapFiles) == 0 {
		return errors.New("no tap file: open the TAP and put it in TapFiles")
	}
	for i, f := range n.TapFiles {
		if f == nil {
			return fmt.Errorf("tap file %d is nil", i)
		}
	}
	if len(n.VhostFiles) != 0 && len(n.VhostFiles) != len(n.TapFiles) {
		return fmt.Errorf("%d vhost files for %d tap queues: give one per queue or none", len(n.VhostFiles), len(n.TapFiles))
	}
	for i, f := range n.VhostFiles {
		if f == nil {
			return fmt.Errorf("vhost file %d is nil", i)
		}
	}
	if n.MAC != nil && (len(n.MAC) != 6 || n.MAC[0]&1 == 1) {
		return fmt.Errorf("mac %q must be a 6-byte unicast address", n.MAC)
	}
	if n.MTU != 0 && (n.MTU < 68 || n.MTU > 65535) {
		return fmt.Errorf("mtu must be 0 or 68-65535 (got %d)", n.MTU)
	}
	return nil
}
