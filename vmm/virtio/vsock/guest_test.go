package vsock

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

// This file is the guest side of the tests: a small vsock stack that does
// with the device what Linux's virtio_transport does, over virtiotest's
// queues, in a goroutine of its own.

const (
	ramSize  = 64 << 20
	guestCID = 42
	// rxBufSize is what Linux puts in each receive buffer: a header and
	// a page of data.
	rxBufSize = hdrLen + 4096
	// txSlots bounds the guest's packets in flight, each in one or two
	// descriptors of a transmit buffer of its own.
	txSlots  = 32
	txBufLen = hdrLen + 4096
)

// stack is how the guest's sockets behave.
type stack struct {
	// listen are the ports requests are answered on; requests to silent
	// ports are never answered; any other port resets them.
	listen, silent []uint32
	// echo sends what a connection receives back; otherwise it is kept.
	echo bool
	// bufAlloc is each socket's receive buffer (16 KiB when 0).
	bufAlloc uint32
	// stingy sockets never consume what they receive, so they never
	// give the host credit back.
	stingy bool
	// rxBufs is how many receive buffers the driver keeps posted (32
	// when 0, none when negative).
	rxBufs int
}

// gconn is one guest socket.
type gconn struct {
	hostPort, port uint32
	// hostBufAlloc and hostFwdCnt are the host's credit; txCnt is what
	// the guest sent in all.
	hostBufAlloc, hostFwdCnt, txCnt uint32
	// received counts the data bytes received, fwdCnt those consumed,
	// lastFwdCnt the count the host was last told.
	received, fwdCnt, lastFwdCnt uint32
	// out waits for the host's credit; got is what arrived (unless
	// echoed).
	out, got []byte
	// shutdown are the flags of the host's shutdowns; reset is set by
	// the host's RST.
	shutdown uint32
	reset    bool
}

type guest struct {
	t   *testing.T
	dev *Device
	mem *memory.Memory
	irq *virtiotest.Interrupts
	st  stack

	// mu guards everything below: the queues are the driver's, and the
	// stack's goroutine and the test share them.
	mu         sync.Mutex
	alloc      *virtiotest.Alloc
	rx, tx, ev *virtiotest.Queue
	conns      map[[2]uint32]*gconn // by host port, guest port
	// log is the header of every packet the device sent.
	log []header
	// violations are protocol errors of the device.
	violations []string
	// pending are packets waiting for a free transmit buffer.
	pending [][]byte
	// rxAddr and txAddr map chain heads to their buffers, txFree are the
	// transmit buffers not in flight.
	rxAddr, txAddr map[uint16]uint64
	txFree         []uint64

	stop, done chan struct{}
}

// startGuest activates dev in fresh guest memory and runs the stack until
// the test ends, when it also resets the device (before the memory goes).
func startGuest(t *testing.T, dev *Device, st stack) *guest {
	t.Helper()
	if st.bufAlloc == 0 {
		st.bufAlloc = 16 << 10
	}
	if st.rxBufs == 0 {
		st.rxBufs = 32
	}
	mem := virtiotest.Memory(t, ramSize)
	g := &guest{
		t: t, dev: dev, mem: mem, irq: virtiotest.NewInterrupts(), st: st,
		alloc:  virtiotest.NewAlloc(0x1000, ramSize),
		conns:  map[[2]uint32]*gconn{},
		rxAddr: map[uint16]uint64{},
		txAddr: map[uint16]uint64{},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	g.rx = virtiotest.NewQueue(mem, g.alloc, QueueSize)
	g.tx = virtiotest.NewQueue(mem, g.alloc, QueueSize)
	g.ev = virtiotest.NewQueue(mem, g.alloc, QueueSize)
	g.addRx(st.rxBufs)
	for range 8 {
		g.ev.Add(nil, []int{8}) // Linux keeps event buffers posted
	}
	for range txSlots {
		g.txFree = append(g.txFree, g.alloc.Get(txBufLen))
	}
	v1 := virtio.FeatureVersion1
	qs := []*virtio.Queue{g.rx.Device(t, v1), g.tx.Device(t, v1), g.ev.Device(t, v1)}
	if err := dev.Activate(mem, v1, qs, g.irq); err != nil {
		t.Fatal(err)
	}
	go g.loop()
	t.Cleanup(func() {
		g.halt()
		dev.Reset()
		for _, v := range g.violations {
			t.Errorf("device broke the protocol: %s", v)
		}
	})
	return g
}

// addRx posts n fresh receive buffers. g.mu is held (or the stack is not
// running yet).
func (g *guest) addRx(n int) {
	for range n {
		g.postRx(g.alloc.Get(rxBufSize))
	}
	g.dev.Notify(qRx)
}

func (g *guest) postRx(addr uint64) {
	head := g.rx.AddChain([]virtiotest.Desc{{Addr: addr, Len: rxBufSize, Flags: virtiotest.FlagWrite}})
	g.rxAddr[head] = addr
}

// halt stops the stack's goroutine.
func (g *guest) halt() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
}

func (g *guest) loop() {
	defer close(g.done)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-g.irq.C:
		case <-tick.C:
		}
		g.mu.Lock()
		g.step()
		g.mu.Unlock()
	}
}

// step is one round of the driver and the sockets: take back transmit
// buffers, handle received packets (reposting their buffers), send.
func (g *guest) step() {
	for {
		u, ok := g.tx.Next()
		if !ok {
			break
		}
		if addr, ok := g.txAddr[u.Head]; ok {
			delete(g.txAddr, u.Head)
			g.txFree = append(g.txFree, addr)
		}
	}
	refilled := false
	for {
		u, ok := g.rx.Next()
		if !ok {
			break
		}
		g.recv(u.Data)
		addr := g.rxAddr[u.Head]
		delete(g.rxAddr, u.Head)
		g.postRx(addr)
		refilled = true
	}
	if refilled {
		g.dev.Notify(qRx)
	}
	for _, c := range g.conns {
		g.sendData(c)
	}
	g.flush()
}

func (g *guest) violation(format string, args ...any) {
	g.violations = append(g.violations, fmt.Sprintf(format, args...))
}

// recv handles one packet from the device as Linux's socket layer would.
func (g *guest) recv(pkt []byte) {
	if len(pkt) < hdrLen {
		g.violation("packet of %d bytes", len(pkt))
		return
	}
	h := parseHeader(pkt)
	data := pkt[hdrLen:]
	g.log = append(g.log, h)
	switch {
	case int(h.len) != len(data):
		g.violation("header says %d bytes of data, the buffer holds %d", h.len, len(data))
	case h.dstCID != guestCID || h.typ != typeStream:
		g.violation("packet %+v: wrong address or type", h)
	case h.srcCID != HostCID && h.op != opRST:
		// Only a reset for a packet to another CID comes from it.
		g.violation("packet %+v: wrong address or type", h)
	}
	key := [2]uint32{h.srcPort, h.dstPort}
	c := g.conns[key]
	if h.op == opRequest {
		switch {
		case contains(g.st.silent, h.dstPort):
		case c != nil || !contains(g.st.listen, h.dstPort):
			g.queue(guestReset(&h), nil)
		default:
			c = &gconn{hostPort: h.srcPort, port: h.dstPort, hostBufAlloc: h.bufAlloc, hostFwdCnt: h.fwdCnt}
			g.conns[key] = c
			g.queue(g.header(c, opResponse), nil)
		}
		return
	}
	if c == nil {
		if h.op != opRST {
			g.queue(guestReset(&h), nil)
		}
		return
	}
	c.hostBufAlloc, c.hostFwdCnt = h.bufAlloc, h.fwdCnt
	switch h.op {
	case opRW:
		c.received += h.len
		if c.received-c.lastFwdCnt > g.st.bufAlloc {
			g.violation("port %d: %d bytes sent with %d of credit", c.port, c.received-c.lastFwdCnt, g.st.bufAlloc)
		}
		if g.st.stingy {
			c.got = append(c.got, data...)
			return
		}
		c.fwdCnt += h.len
		if g.st.echo {
			c.out = append(c.out, data...)
		} else {
			c.got = append(c.got, data...)
		}
		if c.fwdCnt-c.lastFwdCnt >= g.st.bufAlloc/2 {
			g.queue(g.header(c, opCreditUpdate), nil)
		}
	case opCreditRequest:
		g.queue(g.header(c, opCreditUpdate), nil)
	case opShutdown:
		c.shutdown |= h.flags
		if c.shutdown == shutdownBoth {
			// Linux resets a connection both sides shut down.
			delete(g.conns, key)
			g.queue(g.header(c, opRST), nil)
		}
	case opRST:
		delete(g.conns, key)
		c.reset = true
	}
}

func contains(ports []uint32, p uint32) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

// header is a packet of c to the host carrying the guest's credit.
func (g *guest) header(c *gconn, op uint16) header {
	c.lastFwdCnt = c.fwdCnt
	return header{
		srcCID: guestCID, dstCID: HostCID,
		srcPort: c.port, dstPort: c.hostPort,
		typ: typeStream, op: op,
		bufAlloc: g.st.bufAlloc, fwdCnt: c.fwdCnt,
	}
}

// guestReset answers a packet of no connection.
func guestReset(h *header) header {
	return header{srcCID: h.dstCID, dstCID: h.srcCID, srcPort: h.dstPort, dstPort: h.srcPort, typ: typeStream, op: opRST}
}

// sendData sends what the host has credit for of c.out.
func (g *guest) sendData(c *gconn) {
	for len(c.out) > 0 && len(g.pending) < txSlots {
		credit := c.hostBufAlloc - (c.txCnt - c.hostFwdCnt)
		if c.txCnt-c.hostFwdCnt >= c.hostBufAlloc {
			return
		}
		n := min(len(c.out), int(credit), txBufLen-hdrLen)
		h := g.header(c, opRW)
		h.len = uint32(n)
		g.queue(h, c.out[:n])
		c.out = c.out[n:]
		c.txCnt += uint32(n)
	}
}

// queue sends a packet once a transmit buffer is free.
func (g *guest) queue(h header, data []byte) {
	pkt := make([]byte, hdrLen, hdrLen+len(data))
	h.put(pkt)
	g.pending = append(g.pending, append(pkt, data...))
	g.flush()
}

// flush puts pending packets on the transmit queue, the header and the
// data in descriptors of their own as older Linux does.
func (g *guest) flush() {
	sent := false
	for len(g.pending) > 0 && len(g.txFree) > 0 {
		pkt := g.pending[0]
		g.pending = g.pending[1:]
		addr := g.txFree[len(g.txFree)-1]
		g.txFree = g.txFree[:len(g.txFree)-1]
		if err := g.mem.WriteAt(pkt, addr); err != nil {
			panic(err)
		}
		descs := []virtiotest.Desc{{Addr: addr, Len: hdrLen}}
		if len(pkt) > hdrLen {
			descs = append(descs, virtiotest.Desc{Addr: addr + hdrLen, Len: uint32(len(pkt) - hdrLen)})
		}
		g.txAddr[g.tx.AddChain(descs)] = addr
		sent = true
	}
	if sent {
		g.dev.Notify(qTx)
	}
}

// inject puts a raw chain of readable buffers on the transmit queue, for
// packets the stack would never send.
func (g *guest) inject(readable ...[]byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tx.Add(readable, nil)
	g.dev.Notify(qTx)
}

// do runs f with the stack stopped.
func (g *guest) do(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f()
}

// until waits for cond, checked with the stack stopped.
func (g *guest) until(what string, cond func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(virtiotest.WaitFor)
	for {
		g.mu.Lock()
		ok := cond()
		g.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%s: not within %v; device sent %v", what, virtiotest.WaitFor, g.ops())
		}
		time.Sleep(time.Millisecond)
	}
}

// ops lists the ops of the packets the device sent, for failure messages.
func (g *guest) ops() []uint16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ops []uint16
	for _, h := range g.log {
		ops = append(ops, h.op)
	}
	return ops
}

// sock returns the guest's socket of host Conn c; g.mu is held.
func (g *guest) sock(c net.Conn) *gconn {
	return g.conns[key(c)]
}

func key(c net.Conn) [2]uint32 {
	return [2]uint32{port(c.LocalAddr()), port(c.RemoteAddr())}
}

// sent reports whether the device sent a packet matching h's op, flags and
// ports; g.mu is held.
func (g *guest) sent(op uint16, hostPort, port uint32) bool {
	for _, h := range g.log {
		if h.op == op && h.srcPort == hostPort && h.dstPort == port {
			return true
		}
	}
	return false
}
