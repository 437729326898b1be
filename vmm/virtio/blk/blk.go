// Package blk is virtio-blk (virtio 1.2 §5.2) backed by a host file or
// block device: one request queue, served by a goroutine of its own so a
// slow disk never stalls the vCPU that kicked it. Requests move data
// straight between the file and the guest's buffers with preadv/pwritev;
// nothing the guest sizes is ever allocated on the host.
package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
)

// Feature bits (virtio 1.2 §5.2.3).
const (
	FeatureSegMax  uint64 = 1 << 2
	FeatureRO      uint64 = 1 << 5
	FeatureBlkSize uint64 = 1 << 6
	FeatureFlush   uint64 = 1 << 9
)

const (
	// SectorSize is the unit of capacity and of request offsets, fixed by
	// the spec whatever blk_size says.
	SectorSize = 512
	// QueueSize is the number of descriptors of the request queue.
	QueueSize = 256
	// SerialLen is the size of the VIRTIO_BLK_T_GET_ID answer.
	SerialLen = 20
)

// configSize covers virtio_blk_config up to blk_size and the topology
// after it; later fields belong to features this device does not offer and
// read as zeros.
const configSize = 32

// Options describe the disk as the guest sees it.
type Options struct {
	// ReadOnly offers VIRTIO_BLK_F_RO and fails every write request. The
	// file may then be opened read-only.
	ReadOnly bool
	// Serial is the disk's ID string for VIRTIO_BLK_T_GET_ID (Linux shows
	// it in /sys/block/vdX/serial and /dev/disk/by-id), up to 20 bytes.
	Serial string
}

// Device is one virtio-blk disk.
type Device struct {
	file     *os.File
	rc       syscall.RawConn
	readOnly bool
	serial   [SerialLen]byte
	sectors  uint64
	config   [configSize]byte

	// life runs the worker of each activation.
	life virtio.Lifecycle[*worker]
}

// New makes a disk of f, a regular file or block device a non-zero
// multiple of 512 bytes long. Once New succeeds the device owns f and
// Close closes it; on error the caller keeps it.
func New(f *os.File, opts Options) (*Device, error) {
	if len(opts.Serial) > SerialLen {
		return nil, fmt.Errorf("virtio-blk %s: serial %q is %d bytes, at most %d fit", f.Name(), opts.Serial, len(opts.Serial), SerialLen)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("virtio-blk %s: %w", f.Name(), err)
	}
	var flags int
	var ctlErr error
	if err := rc.Control(func(fd uintptr) { flags, ctlErr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil || ctlErr != nil {
		return nil, fmt.Errorf("virtio-blk %s: get file flags: %w", f.Name(), errors.Join(err, ctlErr))
	}
	if !opts.ReadOnly && flags&unix.O_ACCMODE == unix.O_RDONLY {
		return nil, fmt.Errorf("virtio-blk %s: file is open read-only; open it read-write or set ReadOnly", f.Name())
	}
	// Linux appends every pwrite to an O_APPEND file, whatever its offset.
	if flags&unix.O_APPEND != 0 {
		return nil, fmt.Errorf("virtio-blk %s: file is open with O_APPEND, which would put every write at its end", f.Name())
	}
	// Seeking to the end sizes regular files and block devices alike;
	// requests use explicit offsets, so the file position does not matter.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("virtio-blk %s: size: %w", f.Name(), err)
	}
	if size == 0 || size%SectorSize != 0 {
		return nil, fmt.Errorf("virtio-blk %s: size %d bytes is not a non-zero multiple of the %d-byte sector", f.Name(), size, SectorSize)
	}
	d := &Device{file: f, rc: rc, readOnly: opts.ReadOnly, sectors: uint64(size) / SectorSize}
	copy(d.serial[:], opts.Serial)
	binary.LittleEndian.PutUint64(d.config[0:], d.sectors)
	// A request is a header, data and a status: the data may use every
	// descriptor but two.
	binary.LittleEndian.PutUint32(d.config[12:], QueueSize-2)
	binary.LittleEndian.PutUint32(d.config[20:], SectorSize)
	return d, nil
}

// Capacity is the disk's size in 512-byte sectors.
func (d *Device) Capacity() uint64 { return d.sectors }

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeBlock }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	f := FeatureSegMax | FeatureBlkSize | FeatureFlush
	if d.readOnly {
		f |= FeatureRO
	}
	return f
}

// QueueSizes implements virtio.Device: one request queue.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	virtio.ReadConfig(d.config[:], offset, data)
}

// WriteConfig implements virtio.Device. Every field this device offers is
// read-only (writeback needs CONFIG_WCE, which is not offered).
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device: it starts serving the request queue.
func (d *Device) Activate(mem *memory.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupter) error {
	err := d.life.Activate(func(stop <-chan struct{}, spawn func(func())) (*worker, error) {
		if len(queues) < 1 || queues[0] == nil {
			return nil, errors.New("the request queue is not enabled")
		}
		w := &worker{
			dev:          d,
			q:            queues[0],
			irq:          irq,
			writeThrough: features&FeatureFlush == 0,
			kick:         make(chan struct{}, 1),
			stop:         stop,
		}
		spawn(w.run)
		// Requests may have been queued before DRIVER_OK without a kick.
		w.wake()
		return w, nil
	})
	if err != nil {
		return fmt.Errorf("virtio-blk: activate: %w", err)
	}
	return nil
}

// Notify implements virtio.Device: it wakes the worker and returns at once.
func (d *Device) Notify(q int) {
	if w, ok := d.life.Active(); ok && q == 0 {
		w.wake()
	}
}

// Reset implements virtio.Device. It waits for the request in progress, so
// nothing touches guest memory once it returns.
func (d *Device) Reset() { d.life.Reset(nil) }

// Err reports why the device stopped serving its queue since the last
// Activate (a ring the driver broke), or nil. Only a reset revives it.
func (d *Device) Err() error {
	if w, ok := d.life.Active(); ok {
		return w.failure()
	}
	return nil
}

// Close stops the device and closes its file.
func (d *Device) Close() error {
	return d.life.Close(nil, func() error {
		if err := d.file.Close(); err != nil {
			return fmt.Errorf("virtio-blk: close %s: %w", d.file.Name(), err)
		}
		return nil
	})
}
