package vsock

import (
	"fmt"
	"io"
	"syscall"

	"github.com/joeyrt/joey/vmm/virtio"
)

// drainTx acts on the packets of the transmit queue, a ring's worth at
// most, returning each chain once read; more reports whether some are
// left.
func (s *session) drainTx() (more bool, err error) {
	for range QueueSize {
		if virtio.Stopping(s.stop) {
			return false, nil
		}
		c, ok, err := s.txq.Pop()
		if err != nil {
			return false, fmt.Errorf("virtio-vsock: transmit queue: %w", err)
		}
		if !ok {
			return false, s.push(qTx, s.txq)
		}
		s.d.mu.Lock()
		if !s.dead {
			s.receive(&c)
		}
		s.d.mu.Unlock()
		s.used = append(s.used, virtio.Used{Head: c.Head})
	}
	return s.txq.Pending(), s.push(qTx, s.txq)
}

// receive checks one packet of the guest and acts on it. Nothing in it is
// trusted: the header may claim any length, source or type. d.mu is held.
func (s *session) receive(c *virtio.Chain) {
	var raw [hdrLen]byte
	n := 0
	for _, b := range c.Readable {
		n += copy(raw[n:], b)
	}
	if n < hdrLen {
		s.drop(fmt.Errorf("packet of %d bytes: shorter than the %d-byte header", n, hdrLen))
		return
	}
	h := parseHeader(raw[:])
	switch avail := c.ReadableLen() - hdrLen; {
	case uint64(h.len) > uint64(avail):
		s.drop(fmt.Errorf("packet header claims %d bytes of payload, the chain holds %d", h.len, avail))
		return
	case h.srcCID != s.d.cid:
		s.drop(fmt.Errorf("packet from CID %d: the guest is CID %d", h.srcCID, s.d.cid))
		return
	case h.typ != typeStream:
		s.drop(fmt.Errorf("packet of type %d: only stream (%d) is offered", h.typ, typeStream))
		return
	case h.op == opInvalid || h.op > opCreditRequest:
		s.drop(fmt.Errorf("packet with op %d: want %d to %d", h.op, opRequest, opCreditRequest))
		return
	}
	conn := s.conns[h.dstPort]
	if h.dstCID != HostCID || conn == nil || conn.remote != h.srcPort {
		// Nobody on the host has this connection, and the host listens
		// on nothing: a request is refused like any other packet.
		if h.op != opRST {
			s.reply(resetFor(&h))
		}
		return
	}
	s.handle(conn, &h, payload(c.Readable, int(h.len)))
}

// handle acts on a packet of a connection the host has. d.mu is held.
func (s *session) handle(c *conn, h *header, data []virtio.Buffer) {
	if h.op == opRST {
		s.forget(c)
		if !c.connected {
			c.dialErr = ErrRefused
		}
		c.end(io.EOF, syscall.ECONNRESET)
		return
	}
	if !c.connected {
		if h.op != opResponse {
			// A connecting socket expects an answer to its request only.
			s.forget(c)
			c.dialErr = fmt.Errorf("guest answered the connection request with op %d", h.op)
			s.reply(c.header(opRST))
			return
		}
		c.connected = true
	}
	// Every packet carries the sender's credit.
	c.peerBufAlloc, c.peerFwdCnt = h.bufAlloc, h.fwdCnt
	c.broadcast()
	switch h.op {
	case opRW:
		s.deliver(c, h, data)
	case opCreditRequest:
		c.sendCredit = true
		s.enqueue(c)
	case opShutdown:
		if h.flags&shutdownSend != 0 {
			c.end(io.EOF, nil)
		}
		if h.flags&shutdownRcv != 0 {
			c.end(nil, syscall.EPIPE)
		}
		if h.flags&shutdownBoth == shutdownBoth {
			// Neither side will send data again: end the connection as
			// Linux does, with a reset.
			s.forget(c)
			s.reply(c.header(opRST))
		}
	case opRequest:
		s.reply(resetFor(h))
	}
	// A response or a credit update needs no more than the credit above.
}

// deliver adds the payload of an OP_RW packet to what c's reader has to
// read, unless the guest sent more than the host gave credit for.
func (s *session) deliver(c *conn, h *header, data []virtio.Buffer) {
	switch {
	case c.closed || c.readErr != nil:
		// Nobody will read it: the host closed the Conn, or the guest
		// had said it would send no more.
		return
	case len(c.rx)+int(h.len) > bufAlloc:
		s.drop(fmt.Errorf("port %d: %d bytes of data with %d of the %d-byte buffer free", c.local, h.len, bufAlloc-len(c.rx), bufAlloc))
		return
	}
	for _, b := range data {
		c.rx = append(c.rx, b...)
	}
}

// payload returns the n bytes after the header, as slices of the chain's
// buffers (n was checked against their length).
func payload(bufs []virtio.Buffer, n int) []virtio.Buffer {
	var out []virtio.Buffer
	skip := hdrLen
	for _, b := range bufs {
		if n == 0 {
			break
		}
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		b = b[skip:]
		skip = 0
		k := min(len(b), n)
		out = append(out, b[:k])
		n -= k
	}
	return out
}

// resetFor is the reset answering h.
func resetFor(h *header) header {
	return header{
		srcCID:  h.dstCID,
		dstCID:  h.srcCID,
		srcPort: h.dstPort,
		dstPort: h.srcPort,
		typ:     typeStream,
		op:      opRST,
	}
}
