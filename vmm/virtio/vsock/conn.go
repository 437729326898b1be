package vsock

import (
	"io"
	"net"
	"os"
	"sync"

	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/mdlayher/vsock"
)

const (
	// bufAlloc is each connection's receive buffer, the credit the host
	// gives the guest (Linux's default socket buffer too).
	bufAlloc = 256 << 10
	// creditThreshold is how much the host reader consumes before the
	// guest is told about it when no other packet carries the news. Less
	// than bufAlloc, so a guest that used up its credit always hears
	// again once the reader has read what it sent.
	creditThreshold = bufAlloc / 4
	// sendBuffer bounds what a Conn holds for the guest, like a socket's
	// send buffer, whatever credit the guest gives.
	sendBuffer = 256 << 10
)

const network = "vsock"

// conn is the host end of one stream connection.
//
// Like virtio-console's host Conn it is hand-written rather than a socket
// pumped by goroutines: Read takes what the device's goroutine put into
// the receive buffer, Write fills the send buffer the goroutine empties
// into the guest's receive buffers, and neither ever touches guest
// memory, so a reset need not wait for them. Deadlines are
// virtio.Deadlines, under d.mu, woken through wake.
type conn struct {
	d             *Device
	s             *session
	local, remote uint32
	virtio.Deadlines
	// readMu and writeMu admit one Read and one Write at a time, so the
	// bytes of one Write reach the guest contiguously, as on a socket.
	readMu, writeMu sync.Mutex

	// Guarded by d.mu.
	//
	// connected is set by the guest's response; dialErr says why the
	// connection never was.
	connected bool
	dialErr   error
	// attached is set while the session has the connection; queued while
	// it is in the session's send queue.
	attached, queued bool
	// sendRequest, sendShutdown and sendCredit are packets owed to the
	// guest: the request, the shutdown after Close (once tx is out) and
	// a credit update.
	sendRequest, sendShutdown, sendCredit bool
	// closed is set by Close.
	closed bool
	// readErr is what Read returns once rx is empty (io.EOF when the
	// guest will send no more); writeErr is what Write fails with.
	readErr, writeErr error
	// rx is data from the guest not read yet, at most bufAlloc bytes;
	// fwdCnt counts the bytes read in all, lastFwdCnt is the count the
	// guest was last told.
	rx                 []byte
	fwdCnt, lastFwdCnt uint32
	// tx is data written but not sent yet; txCnt counts the bytes
	// written in all. The guest's socket has room for peerBufAlloc bytes
	// and had consumed peerFwdCnt when it last said so.
	tx                       []byte
	txCnt                    uint32
	peerBufAlloc, peerFwdCnt uint32
	// wake is closed, and replaced, whenever something a blocked call
	// waits for may have changed.
	wake chan struct{}
}

// Read implements net.Conn: it returns what the guest sent, waiting until
// there is some. Once the guest shut down its sending side, or reset the
// connection, it returns io.EOF after the data.
func (c *conn) Read(b []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	for {
		switch {
		case c.closed:
			return 0, c.opError("read", net.ErrClosed)
		case c.ReadExpired():
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		case len(b) == 0:
			return 0, nil
		case len(c.rx) > 0:
			n := copy(b, c.rx)
			c.consume(n)
			return n, nil
		case c.readErr == io.EOF:
			return 0, io.EOF
		case c.readErr != nil:
			return 0, c.opError("read", c.readErr)
		}
		c.WaitRead(c.wake, nil)
	}
}

// consume drops n read bytes and owes the guest a credit update once the
// reader has freed enough of the buffer.
func (c *conn) consume(n int) {
	if c.rx = c.rx[n:]; len(c.rx) == 0 {
		c.rx = nil
	}
	c.fwdCnt += uint32(n)
	if c.attached && c.fwdCnt-c.lastFwdCnt >= creditThreshold {
		c.sendCredit = true
		c.s.enqueue(c)
	}
}

// Write implements net.Conn. Like a socket it returns once all of b is
// accepted into the send buffer, which the device empties into the
// guest's receive buffers. It waits while the guest's socket has no room
// (flow control) or the send buffer is full.
func (c *conn) Write(b []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	n := 0
	for {
		switch {
		case c.closed:
			return n, c.opError("write", net.ErrClosed)
		case c.writeErr != nil:
			return n, c.opError("write", c.writeErr)
		case n == len(b):
			return n, nil
		case c.WriteExpired():
			return n, c.opError("write", os.ErrDeadlineExceeded)
		}
		if k := min(len(b)-n, c.credit(), sendBuffer-len(c.tx)); k > 0 {
			c.tx = append(c.tx, b[n:n+k]...)
			c.txCnt += uint32(k)
			n += k
			c.s.enqueue(c)
			continue
		}
		c.WaitWrite(c.wake, nil)
	}
}

// credit is how many more bytes the guest's socket has room for (virtio
// 1.2 §5.10.6.3.1): its buffer less what was written and it has not
// consumed. The counters wrap; a guest claiming to have consumed more than
// it got gets nothing.
func (c *conn) credit() int {
	inFlight := c.txCnt - c.peerFwdCnt
	if inFlight >= c.peerBufAlloc {
		return 0
	}
	return int(c.peerBufAlloc - inFlight)
}

func (c *conn) broadcast() {
	close(c.wake)
	c.wake = make(chan struct{})
}

// end records that reads (after the data) and writes fail from now on;
// a nil error leaves that side as it is, and the first reason stays.
func (c *conn) end(readErr, writeErr error) {
	if c.readErr == nil {
		c.readErr = readErr
	}
	if c.writeErr == nil {
		c.writeErr = writeErr
	}
	c.broadcast()
}

// hasWork reports whether the guest is owed a packet of c.
func (c *conn) hasWork() bool {
	return c.attached && (c.sendRequest || len(c.tx) > 0 || c.sendShutdown || c.sendCredit)
}

// header is a packet of c to the guest carrying the host's credit.
func (c *conn) header(op uint16) header {
	return header{
		srcCID:   HostCID,
		dstCID:   c.d.cid,
		srcPort:  c.local,
		dstPort:  c.remote,
		typ:      typeStream,
		op:       op,
		bufAlloc: bufAlloc,
		fwdCnt:   c.fwdCnt,
	}
}

// Close implements net.Conn. What was written still goes to the guest,
// then a shutdown of both directions; what the guest sends after it is
// dropped, and once the shutdown is out the connection is forgotten (the
// guest's reset, or anything else it sends, finds it gone).
func (c *conn) Close() error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if c.closed {
		return c.opError("close", net.ErrClosed)
	}
	c.closed = true
	c.rx = nil
	if c.attached {
		c.sendShutdown = true
		c.s.enqueue(c)
	}
	c.broadcast()
	return nil
}

// LocalAddr implements net.Conn: the host's CID and the connection's
// host port.
func (c *conn) LocalAddr() net.Addr { return &vsock.Addr{ContextID: HostCID, Port: c.local} }

// RemoteAddr implements net.Conn: the guest's CID and the port dialed.
func (c *conn) RemoteAddr() net.Addr { return &vsock.Addr{ContextID: c.d.CID(), Port: c.remote} }

func (c *conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: network, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
