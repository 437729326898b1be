package console

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

// This file is the guest side of the tests: a simulation of what Linux's
// virtio_console driver does with the device, over virtiotest's queues.

const (
	ramSize  = 64 << 20
	pageSize = 4096
	// badID is VIRTIO_CONSOLE_BAD_ID, the id Linux sends DEVICE_READY with.
	badID = ^uint32(0)
)

// newDevice returns a device with ports named names, closed when the test
// ends.
func newDevice(t *testing.T, names ...string) *Device {
	t.Helper()
	var ports []Port
	for _, n := range names {
		ports = append(ports, Port{Name: n})
	}
	d, err := New(ports)
	if err != nil {
		t.Fatal(err)
	}
	// Without a send buffer every host write waits for the guest, which
	// is what most tests examine; TestSmallHostWritesDoNotWaitForTheGuest
	// covers the buffer.
	d.sendBuffer = 0
	t.Cleanup(func() { d.Close() })
	return d
}

func hostSide(t *testing.T, d *Device, name string) net.Conn {
	t.Helper()
	c, err := d.Conn(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type ctrlMsg struct {
	id           uint32
	event, value uint16
	payload      []byte
}

func (m ctrlMsg) String() string {
	return fmt.Sprintf("{id %d event %d value %d payload %q}", m.id, m.event, m.value, m.payload)
}

// guest is one probe of the driver: the queues it laid out and what the
// device told it.
type guest struct {
	t     *testing.T
	dev   *Device
	mem   *memory.Memory
	alloc *virtiotest.Alloc
	irq   *virtiotest.Interrupts
	// q is the driver side of every queue; nil for those it left disabled.
	q []*virtiotest.Queue
	// rxShape is the writable buffers of each port receive chain Linux
	// would add (one page); tests split it to prove chains may be split.
	rxShape []int
	// rxFill is how many receive chains a port gets when it is added.
	rxFill int
	// added, names and hostOpen are the driver's port state.
	added    map[uint32]bool
	names    map[uint32]string
	hostOpen map[uint32]bool
	// log is every control message received, in order.
	log []ctrlMsg
}

// boot probes dev in fresh guest memory with the given features.
func boot(t *testing.T, dev *Device, features uint64) *guest {
	t.Helper()
	g := &guest{t: t, dev: dev, mem: virtiotest.Memory(t, ramSize), alloc: virtiotest.NewAlloc(0x1000, ramSize)}
	g.probe(features)
	return g
}

// reprobe is the driver loading again after a reset, in the same memory.
func (g *guest) reprobe(features uint64) *guest {
	g.t.Helper()
	n := &guest{t: g.t, dev: g.dev, mem: g.mem, alloc: g.alloc}
	n.probe(features)
	return n
}

func (g *guest) probe(features uint64) {
	g.t.Helper()
	g.irq = virtiotest.NewInterrupts()
	g.rxShape, g.rxFill = []int{pageSize}, 16
	g.added, g.names, g.hostOpen = map[uint32]bool{}, map[uint32]string{}, map[uint32]bool{}
	sizes := g.dev.QueueSizes()
	g.q = make([]*virtiotest.Queue, len(sizes))
	dq := make([]*virtio.Queue, len(sizes))
	for i, size := range sizes {
		// Without MULTIPORT Linux sets up only port 0's two queues.
		if i >= 2 && features&FeatureMultiport == 0 {
			continue
		}
		g.q[i] = virtiotest.NewQueue(g.mem, g.alloc, size)
		dq[i] = g.q[i].Device(g.t, features)
	}
	if err := g.dev.Activate(g.mem, features|virtio.FeatureVersion1, dq, g.irq); err != nil {
		g.t.Fatal(err)
	}
}

// fillControl adds n page-sized control receive buffers.
func (g *guest) fillControl(n int) {
	for range n {
		g.q[qControlRx].Add(nil, []int{pageSize})
	}
	g.dev.Notify(qControlRx)
}

// sendRaw queues a control transmit chain and, as Linux does, expects it
// back before going on.
func (g *guest) sendRaw(readable [][]byte) {
	g.t.Helper()
	g.q[qControlTx].Add(readable, nil)
	g.dev.Notify(qControlTx)
	if _, ok := g.q[qControlTx].Next(); !ok {
		g.t.Fatal("control message not returned by the time the kick returned")
	}
}

func header(id uint32, event, value uint16) []byte {
	b := make([]byte, controlLen)
	binary.LittleEndian.PutUint32(b, id)
	binary.LittleEndian.PutUint16(b[4:], event)
	binary.LittleEndian.PutUint16(b[6:], value)
	return b
}

func (g *guest) send(id uint32, event, value uint16) {
	g.t.Helper()
	g.sendRaw([][]byte{header(id, event, value)})
}

// recv takes one control message, giving its buffer back as Linux does.
func (g *guest) recv() (ctrlMsg, bool) {
	u, ok := g.q[qControlRx].Next()
	if !ok {
		return ctrlMsg{}, false
	}
	g.fillControl(1)
	if len(u.Data) < controlLen {
		// Linux drops what is shorter than the header.
		return ctrlMsg{}, true
	}
	m := ctrlMsg{
		id:      binary.LittleEndian.Uint32(u.Data),
		event:   binary.LittleEndian.Uint16(u.Data[4:]),
		value:   binary.LittleEndian.Uint16(u.Data[6:]),
		payload: u.Data[controlLen:],
	}
	g.log = append(g.log, m)
	return m, true
}

// process handles every pending control message as Linux's
// handle_control_message does.
func (g *guest) process() {
	g.t.Helper()
	for {
		m, ok := g.recv()
		if !ok {
			return
		}
		switch m.event {
		case evDeviceAdd:
			if uint64(m.id) >= uint64(len(g.dev.ports)) {
				continue
			}
			if !g.added[m.id] {
				g.added[m.id] = true
				g.fillRx(m.id, g.rxFill)
			}
			g.send(m.id, evPortReady, 1)
		case evPortName:
			if _, named := g.names[m.id]; !named {
				name, _, _ := bytes.Cut(m.payload, []byte{0})
				g.names[m.id] = string(name)
			}
		case evPortOpen:
			g.hostOpen[m.id] = m.value == 1
		}
	}
}

// handshake is the driver's probe with MULTIPORT: control buffers, then
// DEVICE_READY, then every port the device adds.
func (g *guest) handshake() {
	g.t.Helper()
	g.fillControl(32)
	g.send(badID, evDeviceReady, 1)
	g.process()
	for _, p := range g.dev.ports {
		if g.names[p.id] != p.name || !g.hostOpen[p.id] {
			g.t.Fatalf("after the handshake port %d is named %q (want %q), host open %v; control log %v",
				p.id, g.names[p.id], p.name, g.hostOpen[p.id], g.log)
		}
	}
}

// fillRx adds n receive chains to port id.
func (g *guest) fillRx(id uint32, n int) {
	for range n {
		g.q[rxQueue(id)].Add(nil, g.rxShape)
	}
	g.dev.Notify(rxQueue(id))
}

// open and close are a guest process opening and closing /dev/vportNpM.
func (g *guest) open(id uint32)  { g.t.Helper(); g.send(id, evPortOpen, 1) }
func (g *guest) close(id uint32) { g.t.Helper(); g.send(id, evPortOpen, 0) }

// stream is one port's traffic for pump.
type stream struct {
	id uint32
	// out is what the guest writes; sent of it is queued, inflight
	// chains are not returned yet.
	out            []byte
	sent, inflight int
	// in is what the guest read; pump stops reading at want bytes.
	in   []byte
	want int
}

// pump plays the guest's processes on several ports at once: it writes
// each stream's out in chunk-byte chains split over two buffers, takes
// back returned chains, and reads received data, giving each receive
// buffer back, until everything is written and returned and read.
func (g *guest) pump(chunk int, streams ...*stream) {
	g.t.Helper()
	deadline := time.Now().Add(virtiotest.WaitFor)
	for {
		done, progress := true, false
		for _, s := range streams {
			tx, rx := g.q[txQueue(s.id)], g.q[rxQueue(s.id)]
			for s.sent < len(s.out) && s.inflight < 32 {
				c := s.out[s.sent:min(len(s.out), s.sent+chunk)]
				half := len(c) / 3
				tx.Add([][]byte{c[:half], c[half:]}, nil)
				s.sent += len(c)
				s.inflight++
				g.dev.Notify(txQueue(s.id))
				progress = true
			}
			for {
				if _, ok := tx.Next(); !ok {
					break
				}
				s.inflight--
				progress = true
			}
			for len(s.in) < s.want {
				u, ok := rx.Next()
				if !ok {
					break
				}
				s.in = append(s.in, u.Data...)
				g.fillRx(s.id, 1)
				progress = true
			}
			if s.sent < len(s.out) || s.inflight > 0 || len(s.in) < s.want {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			for _, s := range streams {
				g.t.Errorf("port %d: sent %d/%d, %d chains not returned, read %d/%d", s.id, s.sent, len(s.out), s.inflight, len(s.in), s.want)
			}
			g.t.Fatal("pump made no progress")
		}
		if !progress {
			time.Sleep(50 * time.Microsecond)
		}
	}
}
