package net

import (
	"errors"
	"fmt"

	"github.com/joeyrt/joey/vmm/virtio"
)

// receive moves frames from the TAP to the receive queue until the session
// stops. It reads a frame only once the previous one is delivered, so a
// driver that supplies no buffers leaves frames queued in the TAP (up to
// its txqueuelen, then the kernel drops) rather than lost here.
func (s *session) receive() {
	buf := make([]byte, frameMax)
	var used []virtio.Used
	for {
		n, err := s.tap.Read(buf)
		if err != nil {
			if !virtio.Stopping(s.stop) {
				s.fail(fmt.Errorf("virtio-net: read TAP: %w", err))
			}
			return
		}
		frame := buf[:n]
		if n < HeaderLen+ethHeaderLen || !admit(frame, s.features) {
			continue
		}
		if used, err = s.deliver(frame, used[:0]); err != nil {
			if !virtio.Stopping(s.stop) {
				s.fail(err)
			}
			return
		}
	}
}

// errStopped ends delivery when the session stops while it waits for
// buffers, or when an interrupt failed (push recorded why).
var errStopped = errors.New("virtio-net: stopped")

// deliver writes frame, header first, into as many receive chains as it
// needs (one without MRG_RXBUF), waiting for the driver to supply them.
// A frame that can never fit is dropped and the chains kept for the next.
func (s *session) deliver(frame []byte, used []virtio.Used) ([]virtio.Used, error) {
	mrg := s.features&FeatureMrgRxbuf != 0
	var k int
	for {
		var fits bool
		if k, fits = s.fit(len(frame), mrg); fits {
			break
		}
		if k < 0 {
			return used, nil
		}
		c, ok, err := s.rxq.Pop()
		if err != nil {
			return used, fmt.Errorf("virtio-net: receive queue: %w", err)
		}
		if !ok {
			select {
			case <-s.stop:
				return used, errStopped
			case <-s.rxKick:
			}
			continue
		}
		if c.WritableLen() < HeaderLen {
			// No frame fits a chain without room for its header: give it
			// back empty now (used entries need not follow ring order).
			if !s.push(rxQueue, s.rxq, []virtio.Used{{Head: c.Head}}) {
				return used, errStopped
			}
			continue
		}
		s.held = append(s.held, c)
	}
	putU16(frame[10:], uint16(k)) // num_buffers
	for _, c := range s.held[:k] {
		n := c.Write(frame)
		frame = frame[n:]
		used = append(used, virtio.Used{Head: c.Head, Written: uint32(n)})
	}
	s.held = append(s.held[:0], s.held[k:]...)
	if !s.push(rxQueue, s.rxq, used) {
		return used, errStopped
	}
	return used, nil
}

// fit reports how many of the held chains, from the first, hold n bytes:
// (k, true) when they do, (0, false) when more are needed, (-1, false)
// when no number of chains the driver can supply ever will.
func (s *session) fit(n int, mrg bool) (int, bool) {
	if !mrg {
		switch {
		case len(s.held) == 0:
			return 0, false
		case s.held[0].WritableLen() >= n:
			return 1, true
		}
		return -1, false
	}
	room := 0
	for i, c := range s.held {
		room += c.WritableLen()
		if room >= n {
			return i + 1, true
		}
	}
	// Every descriptor of the ring is ours and still not enough room.
	if len(s.held) >= int(s.rxq.Size()) {
		return -1, false
	}
	return 0, false
}
