package net

import (
	"fmt"

	"github.com/joeyrt/joey/vmm/virtio"
)

// transmit sends the frames of the transmit queue to the TAP, each chain
// (header and frame) in one write, until the session stops.
func (s *session) transmit() {
	buf := make([]byte, frameMax)
	for {
		select {
		case <-s.stop:
			return
		case <-s.txKick:
		}
		for !virtio.Stopping(s.stop) {
			c, ok, err := s.txq.Pop()
			if err != nil {
				s.fail(fmt.Errorf("virtio-net: transmit queue: %w", err))
				return
			}
			if !ok {
				break
			}
			if !s.send(&c, buf) {
				return
			}
			if !s.push(txQueue, s.txq, []virtio.Used{{Head: c.Head}}) {
				return
			}
		}
	}
}

// send writes the chain's frame to the TAP, or drops it: chains too short
// for a header and an Ethernet header, too long for any packet, or that
// the kernel refuses (a bad header, a link that is down). It returns
// false only when the session stopped during the write.
func (s *session) send(c *virtio.Chain, buf []byte) bool {
	n := c.ReadableLen()
	if n < HeaderLen+ethHeaderLen || n > len(buf) {
		return true
	}
	off := 0
	for _, b := range c.Readable {
		off += copy(buf[off:], b)
	}
	if _, err := s.tap.Write(buf[:n]); err != nil && virtio.Stopping(s.stop) {
		return false
	}
	return true
}
