package tap

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Offload is a set of TUN_F_* bits: the offloaded packets the reader of a
// queue file accepts. With none, the kernel segments and checksums every
// packet before handing it over; each bit lets it pass packets in that
// form, described by the virtio-net header. Writes are not limited by it.
type Offload uint

// Offloads a reader can take (include/uapi/linux/if_tun.h).
const (
	// OffloadCsum: packets with a partial checksum (NEEDS_CSUM).
	OffloadCsum Offload = unix.TUN_F_CSUM
	// OffloadTSO4 and OffloadTSO6: TCP segmentation left to the reader.
	// The kernel refuses them without OffloadCsum.
	OffloadTSO4 Offload = unix.TUN_F_TSO4
	OffloadTSO6 Offload = unix.TUN_F_TSO6
	// OffloadTSOECN: TSO packets with the ECN CWR bit.
	OffloadTSOECN Offload = unix.TUN_F_TSO_ECN
	// OffloadUFO, OffloadUSO4 and OffloadUSO6: UDP fragmentation and
	// segmentation left to the reader.
	OffloadUFO  Offload = unix.TUN_F_UFO
	OffloadUSO4 Offload = unix.TUN_F_USO4
	OffloadUSO6 Offload = unix.TUN_F_USO6
)

// QueueInfo is what a queue file says about the TAP it is attached to.
type QueueInfo struct {
	Name string
	// TAP is false for a TUN (layer 3) device.
	TAP bool
	// VnetHdr: every frame carries a virtio-net header (IFF_VNET_HDR).
	VnetHdr bool
	// MultiQueue: the device was made with IFF_MULTI_QUEUE.
	MultiQueue bool
}

// Inspect asks a queue file which device it is attached to (TUNGETIFF), so
// a user handed a file by somebody else can check it is what it needs.
func Inspect(f *os.File) (QueueInfo, error) {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return QueueInfo{}, fmt.Errorf("TUNGETIFF: %w", err)
	}
	if err := control(f, "TUNGETIFF", func(fd int) error { return unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr) }); err != nil {
		return QueueInfo{}, err
	}
	flags := ifr.Uint16()
	return QueueInfo{
		Name:       ifr.Name(),
		TAP:        flags&unix.IFF_TAP != 0,
		VnetHdr:    flags&unix.IFF_VNET_HDR != 0,
		MultiQueue: flags&unix.IFF_MULTI_QUEUE != 0,
	}, nil
}

// SetVnetHdrSize sets the length of the virtio-net header on every frame
// read or written through f (TUNSETVNETHDRSZ). The kernel fills and reads
// the first 10 bytes (struct virtio_net_hdr) and skips the rest, so 12
// gives the layout of virtio 1.x, whose header ends with num_buffers. The
// size belongs to the TAP, not the file: it applies to all its queues.
func SetVnetHdrSize(f *os.File, size int) error {
	return control(f, "TUNSETVNETHDRSZ", func(fd int) error { return unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, size) })
}

// VnetHdrSize returns the virtio-net header length of f's TAP
// (TUNGETVNETHDRSZ).
func VnetHdrSize(f *os.File) (int, error) {
	var size int
	err := control(f, "TUNGETVNETHDRSZ", func(fd int) error {
		var err error
		size, err = unix.IoctlGetInt(fd, unix.TUNGETVNETHDRSZ)
		return err
	})
	return size, err
}

// SetOffload tells the kernel which offloaded packets the reader of f's
// TAP accepts (TUNSETOFFLOAD); the TAP's netdev features follow, so the
// stack stops or starts segmenting and checksumming for it.
func SetOffload(f *os.File, o Offload) error {
	return control(f, "TUNSETOFFLOAD", func(fd int) error { return unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(o)) })
}

// control runs an ioctl on f's descriptor. It goes through SyscallConn
// because File.Fd would switch the file back to blocking mode.
func control(f *os.File, op string, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if ioErr != nil {
		return fmt.Errorf("%s: %w", op, ioErr)
	}
	return nil
}
