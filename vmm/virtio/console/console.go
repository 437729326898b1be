// Package console is virtio-console (virtio 1.2 §5.3) with
// VIRTIO_CONSOLE_F_MULTIPORT: named serial ports whose host side is a
// net.Conn inside the VMM's process. It carries the joey-agent channel:
// the runtime speaks ttRPC over a port's Conn, and the guest agent finds
// the same port by name in /sys/class/virtio-ports, exactly as with QEMU's
// virtserialport, because Linux's virtio_console names the port from the
// PORT_NAME control message. The ports are plain serial ports, never hvc
// consoles.
//
// The host side is always connected: a port's Conn exists from New to
// Close and outlives device resets, so a guest that reboots or reloads its
// driver finds a fresh port on the same host stream.
//
// Nothing the guest does blocks a vCPU on the host: Notify only handles
// control messages (in-memory work that Linux spins on) and wakes the
// goroutines blocked in the host Conn, which move the data.
package console

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
)

// FeatureMultiport is VIRTIO_CONSOLE_F_MULTIPORT: several ports, announced
// over the control queues.
const FeatureMultiport uint64 = 1 << 1

// MaxPorts is the most ports one device carries, QEMU's default: every port
// costs two queues (and, on PCI, interrupt vectors).
const MaxPorts = 31

// MaxNameLen is the longest port name, in bytes.
const MaxNameLen = 127

// queueSize is every queue's size, as QEMU's. Linux keeps each receive
// queue full of page-sized buffers, so this is also how much guest memory
// a port pins for receiving.
const queueSize = 128

// Control queue indexes (virtio 1.2 §5.3.2).
const (
	qControlRx = 2
	qControlTx = 3
)

// Port configures one port.
type Port struct {
	// Name is what the guest reads from /sys/class/virtio-ports/*/name:
	// printable ASCII without spaces, unique, at most MaxNameLen bytes.
	Name string
}

// Device is one virtio-console device.
type Device struct {
	// ports are indexed by port id; fixed by New.
	ports []*port
	// sendBuffer is each port's send buffer size (see hostConn.Write);
	// fixed by New (tests set 0 to exercise pure back-pressure).
	sendBuffer int

	// mu guards everything below and every port's guest-side state, and
	// is held whenever guest memory or a queue is touched. It is never
	// held while blocking.
	mu sync.Mutex
	// active is set from Activate to Reset or Close.
	active bool
	// closed is set by Close, for good.
	closed bool
	// multiport is whether the driver accepted FeatureMultiport; without
	// it only port 0 exists, as a console the guest keeps open.
	multiport bool
	// ctrlRx and ctrlTx are the control queues; nil while inactive, when
	// the driver did not enable them, or after it broke them.
	ctrlRx, ctrlTx *virtio.Queue
	irq            virtio.Interrupter
	// outbox holds control messages until the driver supplies control
	// receive buffers.
	outbox [][]byte
}

// New returns a device with the given ports; ports[i] gets port id i. The
// host Conns exist from now on.
func New(ports []Port) (*Device, error) {
	if err := validate(ports); err != nil {
		return nil, fmt.Errorf("new virtio-console: %w", err)
	}
	d := &Device{sendBuffer: defaultSendBuffer}
	for i, p := range ports {
		pt := &port{id: uint32(i), name: p.Name, wake: make(chan struct{})}
		pt.conn = newHostConn(d, pt)
		d.ports = append(d.ports, pt)
	}
	return d, nil
}

func validate(ports []Port) error {
	if len(ports) == 0 {
		return errors.New("no ports: want at least one")
	}
	if len(ports) > MaxPorts {
		return fmt.Errorf("%d ports: want at most %d", len(ports), MaxPorts)
	}
	seen := make(map[string]int, len(ports))
	for i, p := range ports {
		switch {
		case p.Name == "":
			return fmt.Errorf("ports[%d].Name is empty", i)
		case len(p.Name) > MaxNameLen:
			return fmt.Errorf("ports[%d].Name %q is %d bytes: want at most %d", i, p.Name, len(p.Name), MaxNameLen)
		case !printable(p.Name):
			// The guest agent trims the name it reads from sysfs, and
			// the name travels as C string: no spaces, controls or NULs.
			return fmt.Errorf("ports[%d].Name %q: want printable ASCII without spaces", i, p.Name)
		}
		if j, dup := seen[p.Name]; dup {
			return fmt.Errorf("ports[%d].Name %q: already the name of ports[%d]", i, p.Name, j)
		}
		seen[p.Name] = i
	}
	return nil
}

func printable(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// Conn returns the host side of the port called name. The same Conn serves
// every activation of the device until it is closed: closing it tells the
// guest the host hung up (PORT_OPEN 0), and the next Conn is a fresh
// connection that reopens the port (PORT_OPEN 1), as a client reconnecting
// to QEMU's chardev socket would. Bytes the guest sent in between are
// dropped, so a new connection never sees an old one's replies. Close on
// the Device makes reads return io.EOF.
func (d *Device) Conn(name string) (net.Conn, error) {
	d.mu.Lock()
	for _, p := range d.ports {
		if p.name != name {
			continue
		}
		s := d.signals()
		if p.conn.closed && !d.closed {
			p.conn = newHostConn(d, p)
			p.pending = nil
			if d.active && d.multiport && p.ready {
				d.send(control(p.id, evPortOpen, 1, nil))
				d.flushControl(&s)
			}
		}
		c := p.conn
		d.unlockAndSignal(&s)
		return c, nil
	}
	d.mu.Unlock()
	return nil, fmt.Errorf("virtio-console: no port named %q", name)
}

// Close deactivates the device and ends every host Conn: reads return
// io.EOF and writes fail. The device cannot be activated again.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.deactivate()
	return nil
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeConsole }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return FeatureMultiport }

// QueueSizes implements virtio.Device: port 0's receive and transmit
// queues, the control receive and transmit queues, then a receive and a
// transmit queue for each further port.
func (d *Device) QueueSizes() []uint16 {
	sizes := make([]uint16, 2*(len(d.ports)+1))
	for i := range sizes {
		sizes[i] = queueSize
	}
	return sizes
}

// rxQueue and txQueue are the queue indexes of port id's receive (host to
// guest) and transmit (guest to host) queues.
func rxQueue(id uint32) int {
	if id == 0 {
		return 0
	}
	return 2 * (int(id) + 1)
}

func txQueue(id uint32) int { return rxQueue(id) + 1 }

// portOf returns the port a data queue belongs to, or nil for the control
// queues and out of range indexes.
func (d *Device) portOf(q int) *port {
	var id int
	switch {
	case q == 0 || q == 1:
		id = 0
	case q == qControlRx || q == qControlTx:
		return nil
	default:
		id = q/2 - 1
	}
	if id < 0 || id >= len(d.ports) {
		return nil
	}
	return d.ports[id]
}

// configSize is struct virtio_console_config: cols, rows (both le16, zero:
// VIRTIO_CONSOLE_F_SIZE is not offered), max_nr_ports (le32) and emerg_wr
// (le32, unused: VIRTIO_CONSOLE_F_EMERG_WRITE is not offered).
const configSize = 12

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var cfg [configSize]byte
	putLE32(cfg[4:], uint32(len(d.ports)))
	virtio.ReadConfig(cfg[:], offset, data)
}

// WriteConfig implements virtio.Device. Only emerg_wr is writable, and it
// is ignored: the driver may use it only with VIRTIO_CONSOLE_F_EMERG_WRITE,
// which is not offered.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device.
func (d *Device) Activate(mem *memory.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupter) error {
	d.mu.Lock()
	switch {
	case d.closed:
		d.mu.Unlock()
		return errors.New("activate virtio-console: device closed")
	case d.active:
		d.mu.Unlock()
		return errors.New("activate virtio-console: already active")
	case len(queues) != 2*(len(d.ports)+1):
		d.mu.Unlock()
		return fmt.Errorf("activate virtio-console: got %d queues, want %d", len(queues), 2*(len(d.ports)+1))
	}
	d.active, d.irq = true, irq
	d.multiport = features&FeatureMultiport != 0
	for _, p := range d.ports {
		if p.id == 0 || d.multiport {
			p.rx, p.tx = queues[rxQueue(p.id)], queues[txQueue(p.id)]
		}
	}
	s := d.signals()
	if d.multiport {
		d.ctrlRx, d.ctrlTx = queues[qControlRx], queues[qControlTx]
		// The driver may have queued control messages before DRIVER_OK.
		d.controlTx(&s)
	}
	for _, p := range d.ports {
		d.discardIfHungUp(p, &s)
		p.broadcast()
	}
	d.unlockAndSignal(&s)
	return nil
}

// Notify implements virtio.Device. Control messages are handled here, on
// the kicking vCPU: they are in-memory work, and Linux spins until its
// control message comes back. Data queues only wake the port's host side.
func (d *Device) Notify(q int) {
	d.mu.Lock()
	if !d.active {
		d.mu.Unlock()
		return
	}
	s := d.signals()
	switch q {
	case qControlRx:
		if d.multiport {
			d.flushControl(&s)
		}
	case qControlTx:
		if d.multiport {
			d.controlTx(&s)
		}
	default:
		if p := d.portOf(q); p != nil {
			d.discardIfHungUp(p, &s)
			p.broadcast()
		}
	}
	// New receive buffers, or a port the guest just opened, take what
	// the host already wrote.
	for _, p := range d.ports {
		d.flushPending(p, &s)
	}
	d.unlockAndSignal(&s)
}

// Reset implements virtio.Device. The host Conns stay open; blocked reads
// and writes wait for the next activation.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deactivate()
}

// deactivate drops every queue and what the guest told the device, so
// nothing touches guest memory once d.mu is released.
func (d *Device) deactivate() {
	d.active, d.multiport = false, false
	d.ctrlRx, d.ctrlTx, d.irq, d.outbox = nil, nil, nil, nil
	for _, p := range d.ports {
		p.rx, p.tx = nil, nil
		p.ready, p.guestOpen = false, false
		p.txLeft, p.txBusy = nil, false
		p.broadcast()
	}
}

// signals collects the queues to interrupt while d.mu is held.
type signals struct {
	irq virtio.Interrupter
	qs  []int
}

func (d *Device) signals() signals { return signals{irq: d.irq} }

// push returns a chain to the driver and remembers whether queue idx must
// be signalled.
func (s *signals) push(q *virtio.Queue, idx int, head uint16, written int) {
	if q.Push(head, uint32(written)) {
		for _, have := range s.qs {
			if have == idx {
				return
			}
		}
		s.qs = append(s.qs, idx)
	}
}

// unlockAndSignal releases d.mu, then raises the collected interrupts: the
// transport may hold its own lock while calling into the device, so
// signalling under d.mu could deadlock. The transport reports its own
// injection failures; the device has nobody to tell.
func (d *Device) unlockAndSignal(s *signals) {
	d.mu.Unlock()
	if s.irq != nil {
		for _, q := range s.qs {
			_ = s.irq.Queue(q)
		}
	}
	s.qs = s.qs[:0]
}
