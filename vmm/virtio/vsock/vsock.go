// Package vsock is virtio-vsock (virtio 1.2 §5.10) whose host side lives
// in the VMM's process: Device.Dial connects to a port a guest process
// listens on with AF_VSOCK (joey's agent does, through mdlayher/vsock) and
// returns a net.Conn. There is no /dev/vhost-vsock and no socket file. The
// host listens on nothing, so connections the guest opens are refused.
//
// One goroutine per activation owns the queues: it takes the guest's
// packets off the transmit queue and puts the host's into the guest's
// receive buffers. Notify only wakes it, and the host Conns only change
// connection state under the device lock and wake it, so nothing the guest
// does blocks a vCPU or a host call, and only that goroutine touches guest
// memory: Reset stops it and is done.
//
// Streams follow the spec's credit-based flow control: the host never
// sends more than the guest's socket said it has room for, and tells the
// guest how much of its own receive buffer (bufAlloc per connection) its
// reader has freed.
package vsock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"

	"github.com/mdlayher/vsock"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
)

const (
	// QueueSize is the number of descriptors of each queue.
	QueueSize = 128
	// HostCID is the host's address, the source of every packet the
	// device sends (VMADDR_CID_HOST).
	HostCID = 2

	// Queue indexes (virtio 1.2 §5.10.2).
	qRx    = 0
	qTx    = 1
	qEvent = 2

	// configSize is struct virtio_vsock_config: le64 guest_cid.
	configSize = 8

	// minGuestCID is the first CID a guest may have: 0 to 2 name the
	// hypervisor, the local machine and the host.
	minGuestCID = 3
)

// Errors a host Conn or Dial fails with; they are wrapped in *net.OpError.
var (
	// ErrNotActive: the guest driver has not set the device up yet (the
	// guest is still booting), or reset it. Dialing again later may work.
	ErrNotActive = errors.New("guest driver has not set up the device")
	// ErrRefused: the guest answered the connection request with a reset,
	// as Linux does when nobody listens on the port.
	ErrRefused = errors.New("connection refused")
	// ErrReset: the guest driver reset the device, which ends every
	// connection.
	ErrReset = errors.New("device reset")
)

// Device is one virtio-vsock device.
type Device struct {
	cid    uint64
	config [configSize]byte

	// life runs the goroutine of each activation.
	life virtio.Lifecycle[*session]

	// mu guards everything below and the state of the running session
	// and of every Conn. It is never held while blocking.
	mu     sync.Mutex
	closed bool
	// sess is the running activation; nil while inactive.
	sess *session
	// nextPort is where the search for a free host port starts.
	nextPort uint32
}

var _ virtio.Device = (*Device)(nil)

// New returns a device that gives the guest the address cid.
func New(cid uint64) (*Device, error) {
	// The spec reserves the upper 32 bits; Linux uses the CID as a u32
	// with U32_MAX meaning "any".
	if cid < minGuestCID || cid >= math.MaxUint32 {
		return nil, fmt.Errorf("virtio-vsock: guest_cid %d: want %d to %d (0 to 2 are the hypervisor, local and host, %d is VMADDR_CID_ANY)",
			cid, minGuestCID, uint64(math.MaxUint32-1), uint64(math.MaxUint32))
	}
	d := &Device{cid: cid, nextPort: firstPort}
	putU64(d.config[:], cid)
	return d, nil
}

// CID is the guest's address.
func (d *Device) CID() uint32 { return uint32(d.cid) }

// Dial connects to port of the guest. It fails with ErrNotActive before
// the guest driver has set the device up (callers that start with the
// guest retry), and with ErrRefused when nobody listens on port; it waits
// for the guest's answer until ctx ends. Until Close, the Conn holds up to
// 256 KiB of what the guest sent and of what the host wrote.
func (d *Device) Dial(ctx context.Context, port uint32) (net.Conn, error) {
	remote := &vsock.Addr{ContextID: d.CID(), Port: port}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sess
	switch {
	case d.closed:
		return nil, dialError(remote, virtio.ErrClosed)
	case s == nil:
		return nil, dialError(remote, ErrNotActive)
	case s.err != nil:
		return nil, dialError(remote, s.err)
	}
	c, err := s.open(port)
	if err != nil {
		return nil, dialError(remote, err)
	}
	for {
		switch {
		case c.dialErr != nil:
			return nil, dialError(remote, c.dialErr)
		case c.connected:
			return c, nil
		}
		if err := ctx.Err(); err != nil {
			s.abort(c)
			return nil, dialError(remote, err)
		}
		wake := c.wake
		d.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
		}
		d.mu.Lock()
	}
}

func dialError(remote net.Addr, err error) error {
	return &net.OpError{Op: "dial", Net: network, Addr: remote, Err: err}
}

// Close deactivates the device for good: every Conn reads io.EOF after
// what it holds and fails writes, and Dial fails.
func (d *Device) Close() error {
	d.detach(func(s *session) { s.failAll(io.EOF, io.ErrClosedPipe) }, true)
	return d.life.Close(nil, nil)
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeVsock }

// Features implements virtio.Device. None are offered: without
// VIRTIO_VSOCK_F_SEQPACKET the device carries stream sockets only.
func (d *Device) Features() uint64 { return 0 }

// QueueSizes implements virtio.Device: receive, transmit and event.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize, QueueSize, QueueSize} }

// ReadConfig implements virtio.Device: le64 guest_cid.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	virtio.ReadConfig(d.config[:], offset, data)
}

// WriteConfig implements virtio.Device; guest_cid is read-only.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device. The event queue may be left disabled:
// the device posts no events (it is never migrated).
func (d *Device) Activate(mem *memory.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupter) error {
	err := d.life.Activate(func(stop <-chan struct{}, spawn func(func())) (*session, error) {
		if len(queues) <= qTx || queues[qRx] == nil || queues[qTx] == nil {
			return nil, errors.New("the receive and transmit queues must both be enabled")
		}
		s := newSession(d, queues[qRx], queues[qTx], irq, stop)
		d.mu.Lock()
		defer d.mu.Unlock()
		// Close marks the device closed before it stops the activation:
		// an activation it could not see must not start.
		if d.closed {
			return nil, virtio.ErrClosed
		}
		d.sess = s
		spawn(s.run)
		// The driver may have queued packets before DRIVER_OK.
		s.wake()
		return s, nil
	})
	if err != nil {
		return fmt.Errorf("virtio-vsock: activate: %w", err)
	}
	return nil
}

// Notify implements virtio.Device: a kick of the receive queue means new
// buffers, of the transmit queue new packets. It only wakes the session's
// goroutine; kicks of the event queue need nothing.
func (d *Device) Notify(q int) {
	if s, ok := d.life.Active(); ok && (q == qRx || q == qTx) {
		s.wake()
	}
}

// Reset implements virtio.Device. Every connection ends (ErrReset) and a
// Dial waiting for the guest fails; once it returns nothing touches guest
// memory.
func (d *Device) Reset() {
	d.detach(func(s *session) { s.failAll(ErrReset, ErrReset) }, false)
	d.life.Reset(nil)
}

// detach ends the running session's connections with end, so host calls
// stop waiting for it before its goroutine is stopped, and forgets it.
func (d *Device) detach(end func(*session), closing bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if closing {
		d.closed = true
	}
	if d.sess != nil {
		end(d.sess)
		d.sess = nil
	}
}

// Err reports why the device stopped serving its queues since the last
// Activate (a ring the driver broke, an interrupt that could not be
// raised), or nil. Only a reset revives it.
func (d *Device) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess == nil {
		return nil
	}
	return d.sess.err
}

// Dropped reports how many packets the guest sent since the last Activate
// the device dropped as malformed (too short, a length beyond the chain,
// an unknown type or op, the wrong source, more data than the credit it
// was given), and why it dropped the last one.
func (d *Device) Dropped() (n uint64, last error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess == nil {
		return 0, nil
	}
	return d.sess.dropped, d.sess.lastDrop
}
