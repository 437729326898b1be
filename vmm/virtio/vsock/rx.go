package vsock

import (
	"fmt"
	"slices"

	"github.com/joeyrt/joey/vmm/virtio"
)

// maxPayload bounds the data of one packet the device sends, as Linux's
// VIRTIO_VSOCK_MAX_PKT_BUF_SIZE bounds what it accepts.
const maxPayload = 64 << 10

// fillRx puts the host's packets into the guest's receive buffers, one
// packet per chain, until either runs out or a ring's worth is done; more
// reports whether work may be left.
func (s *session) fillRx() (more bool, err error) {
	d := s.d
	for range QueueSize {
		d.mu.Lock()
		if s.dead || (len(s.replies) == 0 && len(s.sendq) == 0) {
			d.mu.Unlock()
			return false, s.push(qRx, s.rxq)
		}
		c, ok, err := s.rxq.Pop()
		if err != nil {
			d.mu.Unlock()
			return false, fmt.Errorf("virtio-vsock: receive queue: %w", err)
		}
		if !ok {
			// The driver's next kick of the receive queue resumes.
			d.mu.Unlock()
			return false, s.push(qRx, s.rxq)
		}
		n := 0
		if room := c.WritableLen(); room >= hdrLen {
			if pkt := s.next(room); pkt != nil {
				n = c.Write(pkt)
			}
		}
		// A chain too small for a header goes back empty, as does one
		// taken when the only work left was for connections that ended.
		d.mu.Unlock()
		s.used = append(s.used, virtio.Used{Head: c.Head, Written: uint32(n)})
	}
	return true, s.push(qRx, s.rxq)
}

// next builds the next packet for the guest, at most room bytes, in s.pkt:
// resets first, then each connection's next packet in turn. It returns nil
// when there is none. d.mu is held.
func (s *session) next(room int) []byte {
	if len(s.replies) > 0 {
		h := s.replies[0]
		s.replies = s.replies[1:]
		return s.encode(&h, nil)
	}
	for range len(s.sendq) {
		c := s.sendq[0]
		s.sendq = s.sendq[1:]
		c.queued = false
		pkt := s.packet(c, room)
		if c.hasWork() {
			c.queued = true
			s.sendq = append(s.sendq, c)
		}
		if pkt != nil {
			return pkt
		}
	}
	return nil
}

// packet builds c's next packet: its request, then the data it holds, then
// its shutdown once the data is out; a credit update only when nothing
// else carries the host's credit. d.mu is held.
func (s *session) packet(c *conn, room int) []byte {
	if !c.attached {
		return nil
	}
	h := c.header(opInvalid)
	var data []byte
	switch {
	case c.sendRequest:
		h.op = opRequest
		c.sendRequest = false
	case len(c.tx) > 0 && room > hdrLen:
		n := min(len(c.tx), room-hdrLen, maxPayload)
		h.op, h.len, data = opRW, uint32(n), c.tx[:n]
		if c.tx = c.tx[n:]; len(c.tx) == 0 {
			c.tx = nil
		}
		c.broadcast() // a writer waiting for room may go on
	case c.sendShutdown && len(c.tx) == 0:
		// The host closed the Conn: nothing more will come from it or
		// be read by it. The guest's reset, or anything it sends, finds
		// the connection gone.
		h.op, h.flags = opShutdown, shutdownBoth
		s.forget(c)
	case c.sendCredit:
		h.op = opCreditUpdate
	default:
		return nil
	}
	c.sendCredit = false
	c.lastFwdCnt = c.fwdCnt
	return s.encode(&h, data)
}

func (s *session) encode(h *header, data []byte) []byte {
	s.pkt = slices.Grow(s.pkt[:0], hdrLen+len(data))[:hdrLen]
	h.put(s.pkt)
	s.pkt = append(s.pkt, data...)
	return s.pkt
}
