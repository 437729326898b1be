// Package rng is virtio-rng (virtio 1.2 §5.4): the guest's hardware random
// number source, backed by the host's crypto/rand. It has one request
// queue and no configuration space.
//
// Requests are served on the thread that kicks the queue (a vCPU): filling
// a buffer from crypto/rand is a getrandom call that does not block once
// the host is booted, and the work per kick is capped (see maxFill), so a
// goroutine would add a lifecycle to manage without keeping the vCPU from
// anything. It also makes Reset trivially synchronous.
package rng

import (
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
)

// queueSize is the request queue's size; Linux keeps one request in flight.
const queueSize = 64

// maxFill caps the bytes given for one request. The spec lets the device
// fill less than offered (one or more bytes), and a guest could offer a
// chain as large as its RAM; Linux asks for at most a few hundred bytes.
const maxFill = 64 << 10

// Device is one virtio-rng device.
type Device struct {
	// mu serializes vCPUs kicking the queue against Reset.
	mu sync.Mutex
	// q is the request queue while active; nil when reset, disabled by
	// the driver, or broken.
	q   *virtio.Queue
	irq virtio.Interrupter
}

// New returns a device that is not yet activated.
func New() *Device { return &Device{} }

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeRNG }

// Features implements virtio.Device: virtio-rng has no feature bits.
func (d *Device) Features() uint64 { return 0 }

// QueueSizes implements virtio.Device: one request queue.
func (d *Device) QueueSizes() []uint16 { return []uint16{queueSize} }

// ReadConfig implements virtio.Device: there is no configuration space, so
// every byte reads as zero.
func (d *Device) ReadConfig(offset uint64, data []byte) { clear(data) }

// WriteConfig implements virtio.Device: there is nothing to write.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device. Requests the driver queued before
// DRIVER_OK are served at once.
func (d *Device) Activate(mem *memory.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupter) error {
	if len(queues) != 1 {
		return fmt.Errorf("activate virtio-rng: got %d queues, want 1", len(queues))
	}
	d.mu.Lock()
	d.q, d.irq = queues[0], irq
	notify := d.serve()
	d.mu.Unlock()
	d.signal(irq, notify)
	return nil
}

// Notify implements virtio.Device.
func (d *Device) Notify(q int) {
	if q != 0 {
		return
	}
	d.mu.Lock()
	irq := d.irq
	notify := d.serve()
	d.mu.Unlock()
	d.signal(irq, notify)
}

// Reset implements virtio.Device.
func (d *Device) Reset() {
	d.mu.Lock()
	d.q, d.irq = nil, nil
	d.mu.Unlock()
}

// serve fills every available request and reports whether the driver wants
// an interrupt. A ring the driver broke is dropped until the next Activate.
func (d *Device) serve() (notify bool) {
	if d.q == nil {
		return false
	}
	// Bounded by the ring size, so a driver that keeps refilling the ring
	// from another vCPU cannot keep this one here.
	for range d.q.Size() {
		c, ok, err := d.q.Pop()
		if err != nil {
			d.q = nil
			return notify
		}
		if !ok {
			return notify
		}
		if d.q.Push(c.Head, fill(c.Writable)) {
			notify = true
		}
	}
	return notify
}

// fill writes random bytes over bufs, at most maxFill, and returns how many.
func fill(bufs []virtio.Buffer) uint32 {
	n := 0
	for _, b := range bufs {
		b = b[:min(len(b), maxFill-n)]
		rand.Read(b) // never fails: crypto/rand aborts the process rather than return an error
		n += len(b)
	}
	return uint32(n)
}

// signal raises the queue interrupt outside d.mu: the transport may hold its
// own lock while it calls into the device. The transport reports its own
// injection failures; the device has nobody to tell.
func (d *Device) signal(irq virtio.Interrupter, notify bool) {
	if notify && irq != nil {
		_ = irq.Queue(0)
	}
}
