package console

import "encoding/binary"

// Control events, struct virtio_console_control's event field (virtio 1.2
// §5.3.6.2). Which side sends which is fixed by the spec; an event from the
// wrong side is ignored.
const (
	evDeviceReady  = 0 // driver: ready for DEVICE_ADDs (value 1) or failed (0)
	evDeviceAdd    = 1 // device: port id exists
	evDeviceRemove = 2 // device: port id is gone
	evPortReady    = 3 // driver: port id set up (1) or failed (0)
	evConsolePort  = 4 // device: port id is an hvc console (never sent)
	evResize       = 5 // device: console size changed (never sent)
	evPortOpen     = 6 // both: the sender's end of port id opened (1) or closed (0)
	evPortName     = 7 // device: the payload is port id's name
)

// controlLen is the size of struct virtio_console_control {le32 id; le16
// event; le16 value}.
const controlLen = 8

// maxOutbox bounds the control messages waiting for receive buffers. The
// handshake needs three per port; a driver that asks again and again
// without ever taking them loses the excess rather than grows the VMM.
const maxOutbox = 4 * (MaxPorts + 1)

func putLE32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }

// control encodes one device-to-driver message.
func control(id uint32, event, value uint16, payload []byte) []byte {
	m := make([]byte, controlLen, controlLen+len(payload))
	putLE32(m, id)
	binary.LittleEndian.PutUint16(m[4:], event)
	binary.LittleEndian.PutUint16(m[6:], value)
	return append(m, payload...)
}

// controlTx takes the messages the driver queued on the control transmit
// queue, returns each chain and acts on it. Messages too short for the
// header are dropped; a ring the driver broke is not used again until the
// next activation. One pass takes at most a ring's worth, so a driver
// refilling from another vCPU cannot keep this one here.
func (d *Device) controlTx(s *signals) {
	for i := 0; d.ctrlTx != nil && i < queueSize; i++ {
		q := d.ctrlTx
		c, ok, err := q.Pop()
		if err != nil {
			d.ctrlTx = nil
			break
		}
		if !ok {
			break
		}
		var m [controlLen]byte
		n := 0
		for _, b := range c.Readable {
			n += copy(m[n:], b)
		}
		s.push(q, qControlTx, c.Head, 0)
		if n == controlLen {
			d.handleControl(binary.LittleEndian.Uint32(m[:]), binary.LittleEndian.Uint16(m[4:]), binary.LittleEndian.Uint16(m[6:]))
		}
	}
	d.flushControl(s)
}

// handleControl acts on one driver-to-device message, as Linux's
// virtio_console sends them: DEVICE_READY once the control receive queue
// is filled, PORT_READY once it created port id (and again after a
// suspend), PORT_OPEN when a guest process opens or closes /dev/vportNpM.
func (d *Device) handleControl(id uint32, event, value uint16) {
	switch event {
	case evDeviceReady:
		// Linux sends this with id VIRTIO_CONSOLE_BAD_ID; the id means
		// nothing here.
		if value != 1 {
			return
		}
		for _, p := range d.ports {
			d.send(control(p.id, evDeviceAdd, 1, nil))
		}
	case evPortReady:
		p := d.port(id)
		if p == nil {
			return
		}
		p.ready = value == 1
		if !p.ready {
			return
		}
		// Linux copies the payload and adds a NUL of its own; the NUL
		// sent here, as QEMU sends it, keeps older kernels happy too.
		d.send(control(id, evPortName, 1, append([]byte(p.name), 0)))
		if !p.conn.closed {
			d.send(control(id, evPortOpen, 1, nil))
		}
	case evPortOpen:
		p := d.port(id)
		if p == nil {
			return
		}
		p.guestOpen = value != 0
		p.broadcast()
	}
}

func (d *Device) port(id uint32) *port {
	if uint64(id) >= uint64(len(d.ports)) {
		return nil
	}
	return d.ports[id]
}

// send queues a message for the driver; flushControl delivers it.
func (d *Device) send(m []byte) {
	if len(d.outbox) < maxOutbox {
		d.outbox = append(d.outbox, m)
	}
}

// flushControl puts queued messages into the driver's control receive
// buffers, one message per chain, in order. A chain too small for the next
// message is returned empty (Linux drops a message shorter than the
// header) and the message waits for the next chain.
func (d *Device) flushControl(s *signals) {
	for i := 0; len(d.outbox) > 0 && d.ctrlRx != nil && i < queueSize; i++ {
		q := d.ctrlRx
		c, ok, err := q.Pop()
		if err != nil {
			d.ctrlRx = nil
			return
		}
		if !ok {
			return
		}
		m := d.outbox[0]
		if c.WritableLen() < len(m) {
			s.push(q, qControlRx, c.Head, 0)
			continue
		}
		s.push(q, qControlRx, c.Head, c.Write(m))
		d.outbox = d.outbox[1:]
	}
	if len(d.outbox) == 0 {
		d.outbox = nil
	}
}
