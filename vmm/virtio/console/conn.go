package console

import (
	"io"
	"net"
	"os"
	"sync"

	"github.com/joeyrt/joey/vmm/virtio"
)

// hostConn is the host end of one port.
//
// It is a hand-written net.Conn rather than one end of a socketpair whose
// other end the device would pump with goroutines. The caller's Read moves
// bytes straight from the guest's descriptor chains, and a guest transmit
// chain goes back to the driver only once the host read it; the caller's
// Write fills the guest's receive buffers and, like a socket, a bounded
// send buffer that Notify empties when the guest supplies more. There are
// no pump goroutines to stop on reset or close, no file descriptors, and a
// reset cannot lose bytes a pump had already taken from a socket.
// Deadlines are virtio.Deadlines, under d.mu, woken through the port.
type hostConn struct {
	d *Device
	p *port
	virtio.Deadlines
	// readMu and writeMu admit one Read and one Write at a time, so the
	// bytes of one Write reach the guest contiguously, as on a socket.
	readMu, writeMu sync.Mutex

	// Guarded by d.mu.
	closed bool
}

// newHostConn returns a new host end of p.
func newHostConn(d *Device, p *port) *hostConn {
	c := &hostConn{d: d, p: p}
	c.Deadlines = virtio.NewDeadlines(&d.mu, &c.closed, p.broadcast, c.opError)
	return c
}

// Read implements net.Conn: it returns what the guest has written, waiting
// until there is some. Once the Device is closed it returns io.EOF.
func (c *hostConn) Read(b []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	d := c.d
	d.mu.Lock()
	for {
		switch {
		case c.closed:
			d.mu.Unlock()
			return 0, c.opError("read", net.ErrClosed)
		case d.closed:
			d.mu.Unlock()
			return 0, io.EOF
		case c.ReadExpired():
			d.mu.Unlock()
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		case len(b) == 0:
			d.mu.Unlock()
			return 0, nil
		}
		s := d.signals()
		if n := d.transmit(c.p, b, &s); n > 0 {
			d.unlockAndSignal(&s)
			return n, nil
		}
		c.WaitRead(c.p.wake, func() { d.unlockAndSignal(&s) })
	}
}

// Write implements net.Conn. Like a socket it returns once all of b is
// accepted: in the guest's receive buffers or in the port's send buffer
// (256 KiB), which the device empties into receive buffers as
// the guest supplies them. Only a full send buffer makes it wait: a host
// writing a small request never blocks on a guest that is not reading (not
// yet booted, crashed, or gone), so callers' contexts and deadlines keep
// working. Host data is kept for the guest while it has the port closed or
// the device is reset, never dropped.
func (c *hostConn) Write(b []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	d := c.d
	d.mu.Lock()
	n := 0
	for {
		switch {
		case c.closed:
			d.mu.Unlock()
			return n, c.opError("write", net.ErrClosed)
		case d.closed:
			d.mu.Unlock()
			return n, c.opError("write", io.ErrClosedPipe)
		case n == len(b):
			d.mu.Unlock()
			return n, nil
		case c.WriteExpired():
			d.mu.Unlock()
			return n, c.opError("write", os.ErrDeadlineExceeded)
		}
		s := d.signals()
		p := c.p
		moved := 0
		if len(p.pending) == 0 {
			// Nothing queued ahead: straight into the guest's buffers.
			moved = d.receive(p, b[n:], &s)
			n += moved
		}
		k := min(len(b)-n, d.sendBuffer-len(p.pending))
		p.pending = append(p.pending, b[n:n+k]...)
		n += k
		moved += k
		d.flushPending(p, &s)
		if n == len(b) {
			d.unlockAndSignal(&s)
			return n, nil
		}
		if moved > 0 {
			// Raise the interrupt now so the guest starts reading, and
			// let vCPUs in between batches.
			d.unlockAndSignal(&s)
			d.mu.Lock()
			continue
		}
		c.WaitWrite(p.wake, func() { d.unlockAndSignal(&s) })
	}
}

// Close implements net.Conn. The host hangs up: the guest is told
// (PORT_OPEN 0), so its reads see end of file, and what it transmits is
// discarded until Device.Conn makes the next connection.
func (c *hostConn) Close() error {
	d := c.d
	d.mu.Lock()
	if c.closed {
		d.mu.Unlock()
		return c.opError("close", net.ErrClosed)
	}
	c.closed = true
	// What the guest has not taken was for this connection only.
	c.p.pending = nil
	s := d.signals()
	if d.active && d.multiport && c.p.ready {
		d.send(control(c.p.id, evPortOpen, 0, nil))
		d.flushControl(&s)
	}
	d.discardIfHungUp(c.p, &s)
	c.p.broadcast()
	d.unlockAndSignal(&s)
	return nil
}

// LocalAddr implements net.Conn: the port's name.
func (c *hostConn) LocalAddr() net.Addr { return addr(c.p.name) }

// RemoteAddr implements net.Conn: the guest's end of the same port.
func (c *hostConn) RemoteAddr() net.Addr { return addr(c.p.name) }

func (c *hostConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: network, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

const network = "virtio-serial"

// addr is a port's address: its name.
type addr string

func (a addr) Network() string { return network }
func (a addr) String() string  { return string(a) }
