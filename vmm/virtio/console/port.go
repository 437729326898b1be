package console

import "github.com/joeyrt/joey/vmm/virtio"

// maxBatch bounds the bytes one host write moves into guest buffers before
// it lets go of the device lock, so vCPUs kicking queues wait microseconds,
// not for a whole large write.
const maxBatch = 64 << 10

// defaultSendBuffer is how many bytes a host Write may leave for the guest to
// take later, as a socket's send buffer: enough for any agent request, so
// requests never wait for the guest, and bounded, so a guest that does not
// read holds up the host's writer rather than its memory.
const defaultSendBuffer = 256 << 10

// port is one port: its host Conn and the guest's view of it. Every field
// but id, name and conn is guarded by Device.mu.
type port struct {
	id   uint32
	name string
	conn *hostConn

	// rx and tx are the receive (host to guest) and transmit queues;
	// nil while inactive, when the driver did not enable them, or after
	// it broke them.
	rx, tx *virtio.Queue
	// ready is set once the guest created the port (PORT_READY 1).
	ready bool
	// guestOpen is whether a guest process has the port open. Linux
	// throws away data that arrives while it is closed, so host data
	// waits for it.
	guestOpen bool
	// txBusy says a transmit chain is partly read by the host: txHead
	// goes back to the driver once txLeft, the unread rest of its
	// readable buffers, is empty.
	txBusy bool
	txHead uint16
	txLeft []virtio.Buffer
	// pending is host data accepted by Write that the guest has no
	// receive buffers for yet (at most Device.sendBuffer bytes).
	pending []byte
	// wake is closed, and replaced, whenever something a blocked host
	// read or write waits for may have changed.
	wake chan struct{}
}

func (p *port) broadcast() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// canReceive reports whether host data may go to the guest now. Without
// MULTIPORT, port 0 is a console the guest keeps open.
func (d *Device) canReceive(p *port) bool {
	return d.active && p.rx != nil && (p.guestOpen || !d.multiport)
}

// receive moves host bytes from b into the guest's receive buffers and
// returns how many it moved: at most maxBatch, and nothing while the guest
// cannot take them. Each chain goes back as soon as it holds data, as the
// reader on the other side may be waiting for just that.
func (d *Device) receive(p *port, b []byte, s *signals) int {
	n := 0
	for i := 0; d.canReceive(p) && n < len(b) && n < maxBatch && i < queueSize; i++ {
		q := p.rx
		c, ok, err := q.Pop()
		if err != nil {
			p.rx = nil
			break
		}
		if !ok {
			break
		}
		k := c.Write(b[n:min(len(b), n+maxBatch)])
		s.push(q, rxQueue(p.id), c.Head, k)
		n += k
	}
	return n
}

// flushPending moves what it can of the port's send buffer into the
// guest's receive buffers.
func (d *Device) flushPending(p *port, s *signals) {
	for len(p.pending) > 0 {
		k := d.receive(p, p.pending, s)
		if k == 0 {
			return
		}
		p.pending = p.pending[k:]
		p.broadcast() // a writer waiting for room may go on
	}
	p.pending = nil // drop the emptied backing array
}

// transmit moves guest bytes from the transmit queue into b and returns how
// many, at most maxBatch. A chain goes back to the driver only once the
// host read all of it, so a host that does not read stalls the guest's
// writes.
func (d *Device) transmit(p *port, b []byte, s *signals) int {
	b = b[:min(len(b), maxBatch)]
	n := 0
	for i := 0; n < len(b) && i < queueSize; i++ {
		if !p.txBusy {
			if !d.active || p.tx == nil {
				break
			}
			c, ok, err := p.tx.Pop()
			if err != nil {
				p.tx = nil
				break
			}
			if !ok {
				break
			}
			p.txBusy, p.txHead, p.txLeft = true, c.Head, c.Readable
		}
		for len(p.txLeft) > 0 && n < len(b) {
			k := copy(b[n:], p.txLeft[0])
			n += k
			if p.txLeft[0] = p.txLeft[0][k:]; len(p.txLeft[0]) == 0 {
				p.txLeft = p.txLeft[1:]
			}
		}
		if len(p.txLeft) == 0 {
			s.push(p.tx, txQueue(p.id), p.txHead, 0)
			p.txBusy = false
		}
	}
	return n
}

// discardIfHungUp returns the guest's transmit chains unread once the host
// closed the port's Conn: nobody will read them, and the guest should not
// hold their buffers forever.
func (d *Device) discardIfHungUp(p *port, s *signals) {
	if !p.conn.closed || !d.active || p.tx == nil {
		return
	}
	if p.txBusy {
		s.push(p.tx, txQueue(p.id), p.txHead, 0)
		p.txBusy, p.txLeft = false, nil
	}
	for range queueSize {
		c, ok, err := p.tx.Pop()
		if err != nil {
			p.tx = nil
			return
		}
		if !ok {
			return
		}
		s.push(p.tx, txQueue(p.id), c.Head, 0)
	}
}
