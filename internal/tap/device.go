package tap

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const tunPath = "/dev/net/tun"

// openQueues opens one /dev/net/tun file per queue and attaches each to the
// TAP (TUNSETIFF), appending them to t.files. extra is added to the first
// queue's flags only (IFF_TUN_EXCL for Create). It returns the link's name,
// which the kernel chose if opts.Name was empty. Must run inside the TAP's
// namespace: the TAP is made in the namespace of the file's opener.
func (t *Tap) openQueues(opts Options, extra uint16) (string, error) {
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if opts.VnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	// Only with more than one queue: a TAP made single-queue refuses
	// IFF_MULTI_QUEUE and the other way round.
	if opts.Queues > 1 {
		flags |= unix.IFF_MULTI_QUEUE
	}
	name := opts.Name
	for q := 0; q < opts.Queues; q++ {
		f := flags
		if q == 0 {
			f |= extra
		}
		file, got, err := openQueue(name, f)
		if err != nil {
			return "", fmt.Errorf("queue %d: %w", q, err)
		}
		t.files = append(t.files, file)
		name = got
	}
	return name, nil
}

func openQueue(name string, flags uint16) (*os.File, string, error) {
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, "", fmt.Errorf("open %s: %w (the kernel needs CONFIG_TUN; without udev: mknod %s c 10 200)", tunPath, err, tunPath)
		}
		return nil, "", fmt.Errorf("open %s: %w", tunPath, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("ifreq %q: %w", name, err)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("TUNSETIFF: %w", explainSetIff(name, flags, err))
	}
	return os.NewFile(uintptr(fd), tunPath), ifr.Name(), nil
}

// explainSetIff turns the errnos TUNSETIFF is known to return into advice.
func explainSetIff(name string, flags uint16, err error) error {
	switch {
	case errors.Is(err, unix.EBUSY) && flags&unix.IFF_TUN_EXCL != 0:
		return fmt.Errorf("%w: a link named %q already exists in this namespace; pick another name or Open it", err, name)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w: single-queue TAP %q is already open elsewhere (it takes one file)", err, name)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w: needs CAP_NET_ADMIN in the namespace", err)
	}
	return err
}

// setPersist sets or clears TUNSETPERSIST. It goes through SyscallConn
// because File.Fd would switch the file back to blocking mode.
func setPersist(f *os.File, on bool) error {
	v := 0
	if on {
		v = 1
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("TUNSETPERSIST: %w", err)
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, v) }); err != nil {
		return fmt.Errorf("TUNSETPERSIST: %w", err)
	}
	if ioErr != nil {
		return fmt.Errorf("TUNSETPERSIST: %w", ioErr)
	}
	return nil
}

// configure records the link's index and applies MTU, MAC and up through h,
// a netlink handle in the TAP's namespace.
func (t *Tap) configure(h *netlink.Handle, opts Options) error {
	link, err := h.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("look up link: %w", err)
	}
	t.index = link.Attrs().Index
	if opts.MTU != 0 {
		if err := h.LinkSetMTU(link, opts.MTU); err != nil {
			return fmt.Errorf("set MTU %d: %w", opts.MTU, err)
		}
	}
	if opts.MAC != nil {
		if err := h.LinkSetHardwareAddr(link, opts.MAC); err != nil {
			return fmt.Errorf("set MAC %s: %w", opts.MAC, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

// checkExisting makes sure Open finds a TAP of the right queue mode, so the
// caller gets a reason instead of TUNSETIFF's bare EINVAL.
func checkExisting(h *netlink.Handle, opts Options) error {
	tt, err := lookupTap(h, opts.Name)
	if err != nil {
		return err
	}
	multi := tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0
	switch {
	case multi && opts.Queues == 1:
		return fmt.Errorf("%q is a multi-queue TAP; open it with Queues > 1", opts.Name)
	case !multi && opts.Queues > 1:
		return fmt.Errorf("%q is a single-queue TAP; open it with Queues 1", opts.Name)
	}
	return nil
}
