// Package p9 is the virtio 9P transport (device type 9): the guest's
// "mount -t 9p -o trans=virtio <tag>" reaches a p9fs.Server through it.
//
// The device has one request queue. Each descriptor chain carries one
// T-message in its readable buffers and receives the R-message in its
// writable ones. Requests are handed to a p9fs session and answered in
// completion order, matched back to their chain by the 9P tag, so a slow
// request never holds up the others. Notify only wakes the device's
// goroutine: no file system work runs on a vCPU thread.
package p9

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/p9fs"
	"github.com/joeyrt/joey/vmm/virtio"
)

// FeatureMountTag is VIRTIO_9P_MOUNT_TAG: the configuration space holds
// the tag the guest mounts by.
const FeatureMountTag uint64 = 1 << 0

// QueueSize is the request queue's size. Linux puts a whole request, up
// to msize in pages, in one chain (or one indirect descriptor).
const QueueSize = 128

// MaxTagLen is the longest mount tag accepted; QEMU and Linux's tooling
// assume tags this short.
const MaxTagLen = 31

// 9P framing the device reads itself.
const (
	headerLen    = 7 // size[4] type[1] tag[2]
	msgRlerror   = 7 // what p9fs.Rlerror encodes; the tests read it
	errnoEINVAL  = 22
	errnoENOBUFS = 105
)

// session is what the device needs of a p9fs.Session.
type session interface {
	Submit(frame []byte) error
	Close()
}

// Device is a virtio-9p device serving one p9fs.Server under one tag.
type Device struct {
	config []byte
	// open starts a 9P session for each activation.
	open func(reply func(frame []byte)) (session, error)

	// mu guards act, closed and err.
	mu     sync.Mutex
	act    *activation
	closed bool
	err    error
	// bg counts the goroutines of past and present activations: their
	// queue workers and their sessions closing in the background.
	bg sync.WaitGroup
}

var _ virtio.Device = (*Device)(nil)

// New returns a device that serves server to the guest under tag. The
// caller keeps ownership of server and closes it after the device.
func New(tag string, server *p9fs.Server) (*Device, error) {
	if err := checkTag(tag); err != nil {
		return nil, err
	}
	if server == nil {
		return nil, errors.New("virtio-9p: no server")
	}
	config := binary.LittleEndian.AppendUint16(nil, uint16(len(tag)))
	return &Device{
		config: append(config, tag...),
		open: func(reply func([]byte)) (session, error) {
			return server.NewSession(reply)
		},
	}, nil
}

// checkTag accepts 1 to MaxTagLen printable ASCII bytes without spaces:
// the tag is a mount source in the guest.
func checkTag(tag string) error {
	if len(tag) == 0 || len(tag) > MaxTagLen {
		return fmt.Errorf("virtio-9p mount tag %q: want 1 to %d bytes, got %d", tag, MaxTagLen, len(tag))
	}
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("virtio-9p mount tag %q: byte %d (%#x) is not printable ASCII", tag, i, c)
		}
	}
	return nil
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.Type9P }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return FeatureMountTag }

// QueueSizes implements virtio.Device: one request queue.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device: le16 tag_len, then the tag.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	clear(data)
	if offset < uint64(len(d.config)) {
		copy(data, d.config[offset:])
	}
}

// WriteConfig implements virtio.Device; the configuration is read-only.
func (d *Device) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device: it starts a fresh 9P session.
func (d *Device) Activate(_ *memory.Memory, _ uint64, queues []*virtio.Queue, irq virtio.Interrupter) error {
	if len(queues) != 1 || queues[0] == nil {
		return fmt.Errorf("activate virtio-9p: want the request queue enabled, got %d queues", len(queues))
	}
	d.Reset()
	a := &activation{
		dev:     d,
		q:       queues[0],
		irq:     irq,
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		alive:   true,
		pending: map[uint16]virtio.Chain{},
	}
	sess, err := d.open(a.reply)
	if err != nil {
		return fmt.Errorf("activate virtio-9p: %w", err)
	}
	a.sess = sess
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		sess.Close()
		return errors.New("activate virtio-9p: device closed")
	}
	d.act, d.err = a, nil
	d.bg.Add(1)
	d.mu.Unlock()
	go a.run()
	// The driver may have queued requests before DRIVER_OK.
	virtio.WakeUp(a.kick)
	return nil
}

// Notify implements virtio.Device; it only wakes the device's goroutine.
func (d *Device) Notify(q int) {
	if q != 0 {
		return
	}
	d.mu.Lock()
	a := d.act
	d.mu.Unlock()
	if a != nil {
		virtio.WakeUp(a.kick)
	}
}

// Reset implements virtio.Device. When it returns the device no longer
// touches guest memory; requests still running on the host finish in the
// background and their replies are dropped. It waits for none of them
// (the transport may call it holding the lock an interrupt needs); a
// reply racing with it may still raise one spurious queue interrupt.
func (d *Device) Reset() {
	d.mu.Lock()
	a := d.act
	d.act = nil
	d.mu.Unlock()
	if a != nil {
		a.shutdown(&d.bg)
	}
}

// Err reports what stopped the request queue since the last Activate (a
// descriptor chain the driver built wrongly, an interrupt that could not
// be raised), or nil.
func (d *Device) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (d *Device) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
	}
}

// Close resets the device and waits until every 9P session it opened has
// ended. The device cannot be activated again.
func (d *Device) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.Reset()
	d.bg.Wait()
	return nil
}

// activation is the device between Activate and Reset.
type activation struct {
	dev  *Device
	q    *virtio.Queue
	irq  virtio.Interrupter
	sess session
	// kick wakes run; stop ends it.
	kick, stop chan struct{}

	// mu guards alive, broken, pending, the queue and every access to
	// guest memory.
	mu     sync.Mutex
	alive  bool
	broken bool
	// pending maps the tag of each request in flight to its chain.
	pending map[uint16]virtio.Chain
}

// run serves the queue until stop.
func (a *activation) run() {
	defer a.dev.bg.Done()
	for {
		select {
		case <-a.stop:
			return
		case <-a.kick:
		}
		for {
			c, req, ok := a.next()
			if !ok {
				break
			}
			a.serve(c, req)
		}
	}
}

// next pops a chain and copies its request out of guest memory; ok is
// false when the ring is empty or broken or the activation has stopped.
// Like every access to guest memory it runs under mu and only while
// alive, so Reset never waits for this goroutine, which may be blocked
// raising an interrupt through a transport that is calling Reset.
func (a *activation) next() (c virtio.Chain, req []byte, ok bool) {
	a.mu.Lock()
	if !a.alive || a.broken {
		a.mu.Unlock()
		return c, nil, false
	}
	c, ok, err := a.q.Pop()
	if err != nil {
		// Requests already taken are still answered.
		a.broken = true
	} else if ok {
		req = c.Read()
	}
	a.mu.Unlock()
	if err != nil {
		a.dev.fail(fmt.Errorf("virtio-9p request queue: %w", err))
	}
	return c, req, ok
}

// serve hands one chain's request to the session.
func (a *activation) serve(c virtio.Chain, req []byte) {
	if len(req) < headerLen || c.WritableLen() == 0 {
		// No tag to answer under, or nowhere to answer.
		a.complete(c, nil)
		return
	}
	tag := binary.LittleEndian.Uint16(req[5:])
	if size := binary.LittleEndian.Uint32(req); size >= headerLen && uint64(size) <= uint64(len(req)) {
		req = req[:size] // whatever follows the message is not part of it
	}
	a.mu.Lock()
	_, dup := a.pending[tag]
	if !dup {
		a.pending[tag] = c
	}
	a.mu.Unlock()
	if dup {
		a.complete(c, p9fs.Rlerror(tag, errnoEINVAL))
		return
	}
	if err := a.sess.Submit(req); err != nil {
		// Only a closing session refuses; Reset is under way.
		a.mu.Lock()
		delete(a.pending, tag)
		a.mu.Unlock()
	}
}

// reply routes an R-message to the chain of its tag. The session calls it
// from its own goroutines.
func (a *activation) reply(frame []byte) {
	if len(frame) < headerLen {
		return
	}
	tag := binary.LittleEndian.Uint16(frame[5:])
	a.mu.Lock()
	c, ok := a.pending[tag]
	if ok {
		delete(a.pending, tag)
	}
	a.mu.Unlock()
	if ok {
		a.complete(c, frame)
	}
}

// complete writes frame into c's writable buffers and returns c to the
// driver. A reply that does not fit is replaced by Rlerror(ENOBUFS) under
// the same tag rather than cut short; if even that does not fit, the
// chain comes back with nothing written.
func (a *activation) complete(c virtio.Chain, frame []byte) {
	if len(frame) > c.WritableLen() {
		frame = p9fs.Rlerror(binary.LittleEndian.Uint16(frame[5:]), errnoENOBUFS)
		if len(frame) > c.WritableLen() {
			frame = nil
		}
	}
	a.mu.Lock()
	if !a.alive {
		a.mu.Unlock()
		return
	}
	n := c.Write(frame)
	notify := a.q.Push(c.Head, uint32(n))
	a.mu.Unlock()
	if notify {
		if err := a.irq.Queue(0); err != nil {
			a.dev.fail(fmt.Errorf("virtio-9p interrupt: %w", err))
		}
	}
}

// shutdown stops the activation without waiting for anything: no guest
// memory is touched once it returns. run ends and the session closes (it
// waits for the host side of requests in flight) in the background,
// counted by bg.
func (a *activation) shutdown(bg *sync.WaitGroup) {
	a.mu.Lock()
	a.alive = false
	a.pending = map[uint16]virtio.Chain{}
	a.mu.Unlock()
	close(a.stop)
	bg.Add(1)
	go func() {
		defer bg.Done()
		// Also unblocks run if it is handing the session a request.
		a.sess.Close()
	}()
}
