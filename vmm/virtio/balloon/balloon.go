// Package balloon is virtio-balloon (virtio 1.2 §5.5) for one job only:
// free page reporting (VIRTIO_BALLOON_F_REPORTING, §5.5.6.7). The guest
// hands the device ranges of pages it has freed, and the device gives the
// host memory behind them back to the host kernel, so a guest that once
// touched all its RAM does not keep it all resident for ever.
//
// The device never asks the guest to inflate: num_pages is always 0, so a
// conforming driver never puts a page on the inflate queue. Nothing else
// optional is offered (no statistics, free page hinting, page poisoning or
// deflate on OOM).
//
// The queues are served by a goroutine of the device's own, as blk's are:
// giving back a large range is an madvise the host kernel may take a while
// over, and it must not stall the vCPU that kicked. The device never
// reads or writes the reported pages: it takes each buffer's guest address
// and length off the ring (virtio.Queue.PopRanges) and hands them to a
// Discarder.
//
// What a Linux guest needs: CONFIG_VIRTIO_BALLOON (it selects
// CONFIG_PAGE_REPORTING). Linux reports free blocks of pageblock_order (2
// MiB on x86) and up, at most 32 ranges a report, one report in flight,
// and waits only for the chain to come back. It turns reporting off
// itself when the guest poisons or zeroes pages on free (init_on_free=1,
// page_poison=1), because the device does not offer PAGE_POISON to promise
// their contents.
package balloon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
)

// FeatureReporting is VIRTIO_BALLOON_F_REPORTING (virtio 1.2 §5.5.3): the
// reporting queue exists and the driver reports free pages on it.
const FeatureReporting uint64 = 1 << 5

// Queue indexes in the transport's order (virtio 1.2 §5.5.2). The statistics
// and free page hinting queues sit between deflateq and reporting_vq in the
// spec's list, but exist only with features this device does not offer, and
// a transport numbers only the queues that exist: Linux's virtio-pci and
// QEMU both put reporting_vq at index 2 then.
const (
	QueueInflate   = 0
	QueueDeflate   = 1
	QueueReporting = 2
	numQueues      = 3
)

// QueueSize is the number of descriptors of each queue. Linux refuses a
// reporting queue smaller than PAGE_REPORTING_CAPACITY (32 ranges per
// report).
const QueueSize = 128

// Configuration space (struct virtio_balloon_config): le32 num_pages, the
// pages the device wants in the balloon (always 0), then le32 actual, the
// pages the driver says it has put there, which the driver writes. The
// fields after them belong to features not offered and read as zeros.
const (
	offActual  = 4
	configSize = 8
)

// Discarder gives guest RAM back to the host. *memory.Memory is one.
type Discarder interface {
	// Discard drops the host memory behind guest RAM [addr, addr+n); the
	// guest reads zeros there when it touches it again. It must refuse,
	// with an error and without discarding anything, a range that is not
	// page-aligned at both ends or not wholly inside RAM: the range comes
	// from the guest unchecked.
	Discard(addr, n uint64) error
}

var _ Discarder = (*memory.Memory)(nil)

// Device is one virtio-balloon device.
type Device struct {
	discard Discarder
	// reported counts the bytes given back since New.
	reported atomic.Uint64

	// mu guards actual, which vCPUs read and write through the
	// configuration space.
	mu     sync.Mutex
	actual uint32

	// life runs the worker of each activation.
	life virtio.Lifecycle[*worker]
}

var _ virtio.Device = (*Device)(nil)

// New returns a device that gives reported pages back through discard,
// normally the guest's *memory.Memory.
func New(discard Discarder) (*Device, error) {
	if discard == nil {
		return nil, errors.New("virtio-balloon: no Discarder")
	}
	return &Device{discard: discard}, nil
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeBalloon }

// Features implements virtio.Device: free page reporting and nothing else.
func (d *Device) Features() uint64 { return FeatureReporting }

// QueueSizes implements virtio.Device: inflateq, deflateq, reporting_vq.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize, QueueSize, QueueSize} }

// ReadConfig implements virtio.Device: num_pages reads 0, actual what the
// driver last wrote.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var cfg [configSize]byte
	d.mu.Lock()
	binary.LittleEndian.PutUint32(cfg[offActual:], d.actual)
	d.mu.Unlock()
	virtio.ReadConfig(cfg[:], offset, data)
}

// WriteConfig implements virtio.Device: the driver may write actual (any
// part of it); every other field is read-only or absent.
func (d *Device) WriteConfig(offset uint64, data []byte) {
	if offset >= configSize || uint64(len(data)) > configSize-offset {
		return
	}
	var cfg [configSize]byte
	d.mu.Lock()
	defer d.mu.Unlock()
	binary.LittleEndian.PutUint32(cfg[offActual:], d.actual)
	// Bytes the write puts on num_pages are dropped with the copy.
	copy(cfg[offset:], data)
	d.actual = binary.LittleEndian.Uint32(cfg[offActual:])
}

// Activate implements virtio.Device. inflateq and deflateq must be
// enabled; reporting_vq is served when the driver accepted
// FeatureReporting and enabled it. A driver that did not accept the
// feature sets up only the first two queues, and the third is nil or
// missing. mem is not used: reports go to the Discarder given to New, and
// no buffer's contents are ever read.
func (d *Device) Activate(mem *memory.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupter) error {
	err := d.life.Activate(func(stop <-chan struct{}, spawn func(func())) (*worker, error) {
		if len(queues) <= QueueDeflate || queues[QueueInflate] == nil || queues[QueueDeflate] == nil {
			return nil, errors.New("the inflate and deflate queues must both be enabled")
		}
		w := &worker{dev: d, irq: irq, kick: make(chan struct{}, 1), stop: stop}
		copy(w.queues[:], queues)
		if features&FeatureReporting == 0 {
			w.queues[QueueReporting] = nil
		}
		spawn(w.run)
		// Reports may have been queued before DRIVER_OK without a kick.
		w.wake()
		return w, nil
	})
	if err != nil {
		return fmt.Errorf("virtio-balloon: activate: %w", err)
	}
	return nil
}

// Notify implements virtio.Device: it wakes the worker and returns at once.
func (d *Device) Notify(q int) {
	if w, ok := d.life.Active(); ok && q >= 0 && q < numQueues {
		w.wake()
	}
}

// Reset implements virtio.Device. It waits for the chain in progress, so
// nothing is discarded once it returns. The balloon is empty after a
// reset, so actual reads 0 again.
func (d *Device) Reset() {
	d.life.Reset(nil)
	d.mu.Lock()
	d.actual = 0
	d.mu.Unlock()
}

// Close stops the device for good. The Discarder is the caller's.
func (d *Device) Close() error { return d.life.Close(nil, nil) }

// Reported is how many bytes of guest RAM the device has given back to the
// host since New. Pages the guest touches again come back as it does, so
// this is what was returned, not what is out now.
func (d *Device) Reported() uint64 { return d.reported.Load() }

// Err reports why the device stopped serving its queues since the last
// Activate (a ring the driver broke, an interrupt that could not be
// raised), or nil. Only a reset revives it.
func (d *Device) Err() error {
	if w, ok := d.life.Active(); ok {
		return w.failure()
	}
	return nil
}

// Dropped reports how many reported ranges the device skipped since the
// last Activate (not page-aligned, outside RAM, device-readable), and why
// it skipped the last one. Their chains still go back to the driver.
func (d *Device) Dropped() (n uint64, last error) {
	if w, ok := d.life.Active(); ok {
		return w.drops()
	}
	return 0, nil
}
