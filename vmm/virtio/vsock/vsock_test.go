package vsock

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

const agentPort = 1024

// newDevice returns a device for guestCID, closed when the test ends.
func newDevice(t *testing.T) *Device {
	t.Helper()
	d, err := New(guestCID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func dial(t *testing.T, d *Device, port uint32) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), virtiotest.WaitFor)
	defer cancel()
	c, err := d.Dial(ctx, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func port(a net.Addr) uint32 { return a.(*vsock.Addr).Port }

func TestNewRejectsReservedCIDsNamingTheField(t *testing.T) {
	tests := []struct {
		name string
		cid  uint64
		ok   bool
	}{
		{"hypervisor", 0, false},
		{"local", 1, false},
		{"host", 2, false},
		{"first guest CID", 3, true},
		{"last guest CID", math.MaxUint32 - 1, true},
		{"VMADDR_CID_ANY", math.MaxUint32, false},
		{"upper 32 bits reserved", 1 << 32, false},
		{"all ones", math.MaxUint64, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(tt.cid)
			if tt.ok {
				if err != nil {
					t.Fatalf("New(%d): %v", tt.cid, err)
				}
				d.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), "guest_cid") {
				t.Fatalf("New(%d) error = %v, want one naming guest_cid", tt.cid, err)
			}
		})
	}
}

func TestConfigSpaceHoldsTheGuestCID(t *testing.T) {
	d := newDevice(t)
	if d.Type() != 19 || d.Features() != 0 {
		t.Fatalf("type %d features %#x, want 19 and none (stream only)", d.Type(), d.Features())
	}
	if s := d.QueueSizes(); len(s) != 3 || s[0] != QueueSize || s[1] != QueueSize || s[2] != QueueSize {
		t.Fatalf("queue sizes %v, want rx, tx and event of %d", s, QueueSize)
	}
	d.WriteConfig(0, []byte{1, 2, 3, 4}) // read-only: ignored
	cfg := bytes.Repeat([]byte{0xff}, 12)
	d.ReadConfig(0, cfg)
	if got := binary.LittleEndian.Uint64(cfg); got != guestCID || !bytes.Equal(cfg[8:], make([]byte, 4)) {
		t.Fatalf("config %x: want le64 guest_cid %d, then zeros", cfg, guestCID)
	}
}

func TestDialConnectsAndEchoesBothWaysWithinTheGuestsCredit(t *testing.T) {
	tests := []struct {
		name     string
		bufAlloc uint32
		size     int
		conns    int
	}{
		{"a few bytes", 16 << 10, 5, 1},
		{"exactly the guest's buffer", 16 << 10, 16 << 10, 1},
		{"many times the guest's buffer", 8 << 10, 1 << 20, 1},
		{"more than the host's buffer", 512 << 10, 768 << 10, 1},
		{"several connections at once", 8 << 10, 256 << 10, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDevice(t)
			g := startGuest(t, d, stack{listen: []uint32{agentPort}, echo: true, bufAlloc: tt.bufAlloc})
			var reads, writes []<-chan virtiotest.Result
			var want [][]byte
			for i := range tt.conns {
				c := dial(t, d, agentPort)
				if l, r := c.LocalAddr().(*vsock.Addr), c.RemoteAddr().(*vsock.Addr); l.ContextID != HostCID || r.ContextID != guestCID || r.Port != agentPort || l.Port < firstPort {
					t.Fatalf("conn %v -> %v", l, r)
				}
				data := virtiotest.Pattern(byte(i+1), tt.size)
				want = append(want, data)
				writes = append(writes, virtiotest.HostWrite(c, data))
				reads = append(reads, virtiotest.HostRead(c, tt.size))
			}
			for i := range tt.conns {
				if r := virtiotest.Await(t, writes[i], "host write"); r.Err != nil || r.N != tt.size {
					t.Fatalf("conn %d: write %d of %d bytes: %v", i, r.N, tt.size, r.Err)
				}
				r := virtiotest.Await(t, reads[i], "host read")
				if r.Err != nil {
					t.Fatalf("conn %d: read %d bytes: %v", i, r.N, r.Err)
				}
				if !bytes.Equal(r.Data, want[i]) {
					t.Fatalf("conn %d: echo differs from what was written", i)
				}
			}
			g.do(func() {
				if len(g.conns) != tt.conns {
					t.Errorf("guest has %d sockets, want %d", len(g.conns), tt.conns)
				}
			})
		})
	}
}

func TestDialToAPortNobodyListensOnIsRefused(t *testing.T) {
	d := newDevice(t)
	startGuest(t, d, stack{listen: []uint32{agentPort}})
	_, err := d.Dial(context.Background(), agentPort+1)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("Dial = %v, want ErrRefused", err)
	}
	if !strings.Contains(err.Error(), "vm(42):1025") {
		t.Errorf("error %q does not name the address", err)
	}
	noConns(t, d, "a refusal")
}

// noConns checks that the device forgot every connection.
func noConns(t *testing.T, d *Device, after string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.sess.conns); n != 0 {
		t.Fatalf("%d connections left after %s", n, after)
	}
}

// waitDropped waits until the device dropped n guest packets and returns
// why it dropped the last.
func waitDropped(t *testing.T, d *Device, n uint64) error {
	t.Helper()
	deadline := time.Now().Add(virtiotest.WaitFor)
	for {
		got, last := d.Dropped()
		if got == n {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d packets dropped, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDialFailsUntilTheDriverSetsUpTheDevice(t *testing.T) {
	d, err := New(guestCID)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Dial(context.Background(), agentPort); !errors.Is(err, ErrNotActive) {
		t.Fatalf("Dial before activation = %v, want ErrNotActive", err)
	}
	startGuest(t, d, stack{listen: []uint32{agentPort}})
	dial(t, d, agentPort)
	d.Reset()
	if _, err := d.Dial(context.Background(), agentPort); !errors.Is(err, ErrNotActive) {
		t.Fatalf("Dial after reset = %v, want ErrNotActive", err)
	}
	d.Close()
	if _, err := d.Dial(context.Background(), agentPort); !errors.Is(err, virtio.ErrClosed) {
		t.Fatalf("Dial after Close = %v, want ErrClosed", err)
	}
}

func TestDialWaitsForReceiveBuffersToSendTheRequest(t *testing.T) {
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}, rxBufs: -1})
	ch := make(chan error, 1)
	go func() {
		c, err := d.Dial(context.Background(), agentPort)
		if err == nil {
			c.Close()
		}
		ch <- err
	}()
	select {
	case err := <-ch:
		t.Fatalf("Dial returned %v without a receive buffer to send the request in", err)
	case <-time.After(virtiotest.Quiet):
	}
	g.do(func() { g.addRx(4) })
	select {
	case err := <-ch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(virtiotest.WaitFor):
		t.Fatal("Dial did not connect once buffers arrived")
	}
}

func TestDialGivesUpWhenTheContextEndsAndResetsItsRequest(t *testing.T) {
	d := newDevice(t)
	g := startGuest(t, d, stack{silent: []uint32{agentPort}})
	ctx, cancel := context.WithTimeout(context.Background(), virtiotest.Quiet)
	defer cancel()
	_, err := d.Dial(ctx, agentPort)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v, want the context's error", err)
	}
	var req header
	g.until("request and reset for it", func() bool {
		for _, h := range g.log {
			if h.op == opRequest {
				req = h
			}
		}
		return req.op == opRequest && g.sent(opRST, req.srcPort, agentPort)
	})
}

func TestDeadlinesEndBlockedReadsAndWrites(t *testing.T) {
	d := newDevice(t)
	// The guest never consumes, so after its buffer the host has no
	// credit left.
	g := startGuest(t, d, stack{listen: []uint32{agentPort}, stingy: true, bufAlloc: 8 << 10})
	c := dial(t, d, agentPort)

	c.SetReadDeadline(time.Now().Add(virtiotest.Quiet))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline = %v", err)
	}
	c.SetWriteDeadline(time.Now().Add(virtiotest.Quiet))
	n, err := c.Write(make([]byte, 64<<10))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != 8<<10 {
		t.Fatalf("write without credit = %d, %v; want the guest's 8 KiB and a timeout", n, err)
	}
	g.until("guest holds its whole buffer", func() bool { return len(g.sock(c).got) == 8<<10 })

	// A deadline set while a call blocks ends it; a cleared one lets it
	// wait for data.
	c.SetDeadline(time.Time{})
	r := virtiotest.HostRead(c, 1)
	virtiotest.Pending(t, r, "read without a deadline")
	c.SetReadDeadline(time.Now().Add(virtiotest.Quiet))
	if res := virtiotest.Await(t, r, "read"); !errors.Is(res.Err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a deadline was set = %v", res.Err)
	}
	c.SetReadDeadline(time.Time{})
	r = virtiotest.HostRead(c, 2)
	g.do(func() {
		s := g.sock(c)
		h := g.header(s, opRW)
		h.len = 2
		g.queue(h, []byte("hi"))
	})
	if res := virtiotest.Await(t, r, "read"); res.Err != nil || string(res.Data) != "hi" {
		t.Fatalf("read = %q, %v", res.Data, res.Err)
	}
}

func TestWriteWaitsForTheGuestsCreditUpdate(t *testing.T) {
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}, stingy: true, bufAlloc: 8 << 10})
	c := dial(t, d, agentPort)
	data := virtiotest.Pattern(7, 20<<10)
	w := virtiotest.HostWrite(c, data)
	virtiotest.Pending(t, w, "write beyond the guest's credit")
	var s *gconn
	g.until("guest holds its whole buffer", func() bool { s = g.sock(c); return len(s.got) == 8<<10 })
	// The guest's reader takes everything, twice over: each update gives
	// the host another buffer.
	for range 2 {
		var want int
		g.do(func() {
			s.fwdCnt = s.received
			want = min(len(data), int(s.received)+8<<10)
			g.queue(g.header(s, opCreditUpdate), nil)
		})
		g.until("data after the update", func() bool { return len(s.got) == want })
	}
	if r := virtiotest.Await(t, w, "write"); r.Err != nil {
		t.Fatal(r.Err)
	}
	g.do(func() {
		if !bytes.Equal(s.got, data) {
			t.Fatal("guest received other bytes than written")
		}
	})
}

func TestHostReaderGivesTheGuestCreditBack(t *testing.T) {
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}})
	c := dial(t, d, agentPort)
	// Several times the host's buffer, and the host never writes: only
	// credit updates can keep the guest going.
	data := virtiotest.Pattern(3, 4*bufAlloc)
	g.do(func() { g.sock(c).out = bytes.Clone(data) })
	r := virtiotest.Await(t, virtiotest.HostRead(c, len(data)), "host read")
	if r.Err != nil || !bytes.Equal(r.Data, data) {
		t.Fatalf("host read %d bytes (%v), want the guest's %d exactly", r.N, r.Err, len(data))
	}
	g.do(func() {
		if !g.sent(opCreditUpdate, port(c.LocalAddr()), agentPort) {
			t.Fatal("no credit update")
		}
	})
}

func TestCreditRequestIsAnsweredWithAnUpdate(t *testing.T) {
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}})
	c := dial(t, d, agentPort)
	g.do(func() { g.queue(g.header(g.sock(c), opCreditRequest), nil) })
	g.until("credit update", func() bool {
		for _, h := range g.log {
			if h.op == opCreditUpdate && h.bufAlloc == bufAlloc {
				return true
			}
		}
		return false
	})
}

func TestCloseSendsTheDataThenShutdownAndForgetsTheConnection(t *testing.T) {
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}})
	c := dial(t, d, agentPort)
	k := key(c)
	var s *gconn
	g.do(func() { s = g.conns[k] })
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	g.until("shutdown after the data", func() bool { return s.shutdown == shutdownBoth })
	g.do(func() {
		if string(s.got) != "bye" {
			t.Errorf("guest got %q before the shutdown", s.got)
		}
	})
	// The guest's stack answered with a reset; anything else it sends
	// now finds the connection gone.
	g.do(func() {
		h := g.header(s, opRW)
		h.len = 1
		g.queue(h, []byte("?"))
	})
	g.until("reset for data after close", func() bool { return g.sent(opRST, k[0], k[1]) })
	virtiotest.Closed(t, c)
	noConns(t, d, "Close")
}

func TestGuestShutdownEndsHostReadsAfterTheDataAndWritesWhenItStopsReceiving(t *testing.T) {
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}})
	c := dial(t, d, agentPort)
	g.do(func() {
		s := g.sock(c)
		s.out = []byte("last words")
		g.sendData(s)
		h := g.header(s, opShutdown)
		h.flags = shutdownSend
		g.queue(h, nil)
	})
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last words" {
		t.Fatalf("read %q, %v; want the data then EOF", got, err)
	}
	// Half closed: the guest still receives.
	if _, err := c.Write([]byte("ack")); err != nil {
		t.Fatal(err)
	}
	g.until("guest got the ack", func() bool { return string(g.sock(c).got) == "ack" })
	g.do(func() {
		h := g.header(g.sock(c), opShutdown)
		h.flags = shutdownRcv
		g.queue(h, nil)
	})
	g.until("write fails", func() bool {
		_, err := c.Write([]byte("x"))
		return errors.Is(err, syscall.EPIPE)
	})
}

func TestGuestResetEndsTheConnection(t *testing.T) {
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}})
	c := dial(t, d, agentPort)
	r := virtiotest.HostRead(c, 1)
	virtiotest.Pending(t, r, "read")
	g.do(func() { g.queue(g.header(g.sock(c), opRST), nil) })
	if res := virtiotest.Await(t, r, "read"); res.Err != io.ErrUnexpectedEOF && res.Err != io.EOF {
		t.Fatalf("read after the guest's reset = %v, want EOF", res.Err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write after the guest's reset = %v, want ECONNRESET", err)
	}
}

func TestResetEndsOpenConnectionsAndWaitingDials(t *testing.T) {
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}, silent: []uint32{agentPort + 1}, stingy: true, bufAlloc: 4 << 10})
	c := dial(t, d, agentPort)
	r := virtiotest.HostRead(c, 1)
	w := virtiotest.HostWrite(c, make([]byte, 8<<10)) // blocked: no credit
	dialed := make(chan error, 1)
	go func() {
		_, err := d.Dial(context.Background(), agentPort+1)
		dialed <- err
	}()
	g.until("request to the silent port", func() bool {
		for _, h := range g.log {
			if h.op == opRequest && h.dstPort == agentPort+1 {
				return true
			}
		}
		return false
	})
	virtiotest.Pending(t, r, "read")
	virtiotest.Pending(t, w, "write")

	d.Reset()
	if res := virtiotest.Await(t, r, "read"); !errors.Is(res.Err, ErrReset) {
		t.Fatalf("read = %v, want ErrReset", res.Err)
	}
	if res := virtiotest.Await(t, w, "write"); !errors.Is(res.Err, ErrReset) || res.N != 4<<10 {
		t.Fatalf("write = %d, %v; want the credit's 4 KiB and ErrReset", res.N, res.Err)
	}
	select {
	case err := <-dialed:
		if !errors.Is(err, ErrReset) {
			t.Fatalf("Dial = %v, want ErrReset", err)
		}
	case <-time.After(virtiotest.WaitFor):
		t.Fatal("Dial still waits after the reset")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrReset) {
		t.Fatalf("write after reset = %v", err)
	}

	// The guest's driver loads again: new connections work.
	g.halt()
	startGuest(t, d, stack{listen: []uint32{agentPort}, echo: true})
	c2 := dial(t, d, agentPort)
	w = virtiotest.HostWrite(c2, []byte("again"))
	if res := virtiotest.Await(t, virtiotest.HostRead(c2, 5), "read"); string(res.Data) != "again" {
		t.Fatalf("echo after reset = %q, %v", res.Data, res.Err)
	}
	virtiotest.Await(t, w, "write")
}

func TestMalformedPacketsAreDroppedAndTheDeviceKeepsWorking(t *testing.T) {
	valid := func(h header) []byte {
		b := make([]byte, hdrLen)
		h.put(b)
		return b
	}
	base := header{srcCID: guestCID, dstCID: HostCID, srcPort: 5000, dstPort: 6000, typ: typeStream, op: opRW}
	with := func(f func(*header)) header { h := base; f(&h); return h }
	tests := []struct {
		name     string
		readable [][]byte
		want     string
	}{
		{"short header", [][]byte{make([]byte, hdrLen-1)}, "shorter than the 44-byte header"},
		{"empty chain", [][]byte{{}}, "shorter than"},
		{"huge len", [][]byte{valid(with(func(h *header) { h.len = math.MaxUint32 })), []byte("tiny")}, "claims 4294967295 bytes"},
		{"len one beyond the chain", [][]byte{valid(with(func(h *header) { h.len = 5 }))[:20], valid(with(func(h *header) { h.len = 5 }))[20:], []byte("four")}, "claims 5 bytes of payload, the chain holds 4"},
		{"seqpacket", [][]byte{valid(with(func(h *header) { h.typ = 2 }))}, "type 2"},
		{"op invalid", [][]byte{valid(with(func(h *header) { h.op = opInvalid }))}, "op 0"},
		{"op unknown", [][]byte{valid(with(func(h *header) { h.op = 99 }))}, "op 99"},
		{"spoofed source", [][]byte{valid(with(func(h *header) { h.srcCID = 7 }))}, "from CID 7"},
	}
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}, echo: true})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.inject(tt.readable...)
			if last := waitDropped(t, d, uint64(i+1)); last == nil || !strings.Contains(last.Error(), tt.want) {
				t.Fatalf("drop reason %v, want it to mention %q", last, tt.want)
			}
		})
	}
	g.do(func() {
		for _, h := range g.log {
			if h.op == opRST {
				t.Errorf("device answered a malformed packet: %+v", h)
			}
		}
	})
	if err := d.Err(); err != nil {
		t.Fatalf("Err = %v after malformed packets", err)
	}
	c := dial(t, d, agentPort)
	w := virtiotest.HostWrite(c, []byte("still here"))
	if r := virtiotest.Await(t, virtiotest.HostRead(c, 10), "read"); string(r.Data) != "still here" {
		t.Fatalf("echo after malformed packets = %q, %v", r.Data, r.Err)
	}
	virtiotest.Await(t, w, "write")
}

func TestDataBeyondTheHostsCreditIsDropped(t *testing.T) {
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}})
	c := dial(t, d, agentPort)
	chunk := 4096
	g.do(func() {
		s := g.sock(c)
		// Ignore the host's credit: one packet more than it allows.
		for i := range bufAlloc/chunk + 1 {
			h := g.header(s, opRW)
			h.len = uint32(chunk)
			g.queue(h, virtiotest.Pattern(byte(i), chunk))
		}
	})
	if last := waitDropped(t, d, 1); !strings.Contains(last.Error(), "0 of the 262144-byte buffer free") {
		t.Fatalf("drop reason %v", last)
	}
	r := virtiotest.Await(t, virtiotest.HostRead(c, bufAlloc), "read")
	if r.Err != nil || !bytes.Equal(r.Data[:chunk], virtiotest.Pattern(0, chunk)) {
		t.Fatalf("read %d bytes: %v", r.N, r.Err)
	}
}

func TestPacketsOfNoConnectionAreReset(t *testing.T) {
	tests := []struct {
		name  string
		h     header
		reset bool
	}{
		{"guest connects to the host", header{dstCID: HostCID, srcPort: 5000, dstPort: 1234, op: opRequest}, true},
		{"data for no connection", header{dstCID: HostCID, srcPort: 5001, dstPort: 1235, op: opRW}, true},
		{"credit update for no connection", header{dstCID: HostCID, srcPort: 5002, dstPort: 1236, op: opCreditUpdate}, true},
		{"request to another VM", header{dstCID: 77, srcPort: 5003, dstPort: 1237, op: opRequest}, true},
		{"reset for no connection", header{dstCID: HostCID, srcPort: 5004, dstPort: 1238, op: opRST}, false},
	}
	d := newDevice(t)
	g := startGuest(t, d, stack{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			h.srcCID, h.typ, h.bufAlloc = guestCID, typeStream, 4096
			g.do(func() { g.queue(h, nil) })
			if tt.reset {
				g.until("reset", func() bool {
					for _, r := range g.log {
						if r.op == opRST && r.srcPort == h.dstPort && r.dstPort == h.srcPort && r.srcCID == h.dstCID {
							return true
						}
					}
					return false
				})
				return
			}
			time.Sleep(virtiotest.Quiet)
			g.do(func() {
				if g.sent(opRST, h.dstPort, h.srcPort) {
					t.Fatal("device answered a reset with a reset")
				}
			})
		})
	}
	if n, last := d.Dropped(); n != 0 {
		t.Fatalf("%d packets dropped (%v): they are well formed", n, last)
	}
}

func TestBrokenTransmitRingStopsTheDeviceUntilReset(t *testing.T) {
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}})
	c := dial(t, d, agentPort)
	r := virtiotest.HostRead(c, 1)
	g.do(func() {
		g.tx.SetAvailIdx(1000)
		d.Notify(qTx)
	})
	res := virtiotest.Await(t, r, "read")
	if !errors.Is(res.Err, virtio.ErrBadChain) || d.Err() == nil {
		t.Fatalf("read = %v, Err = %v; want both to report the broken ring", res.Err, d.Err())
	}
	if _, err := d.Dial(context.Background(), agentPort); !errors.Is(err, virtio.ErrBadChain) {
		t.Fatalf("Dial on a stopped device = %v", err)
	}
	d.Reset()
	if err := d.Err(); err != nil {
		t.Fatalf("Err after reset = %v", err)
	}
}

func TestCloseEndsConnectionsAndLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	d := newDevice(t)
	g := startGuest(t, d, stack{listen: []uint32{agentPort}, silent: []uint32{agentPort + 1}, stingy: true, bufAlloc: 4 << 10})
	c := dial(t, d, agentPort)
	r := virtiotest.HostRead(c, 1)
	w := virtiotest.HostWrite(c, make([]byte, 8<<10))
	dialed := make(chan error, 1)
	go func() {
		_, err := d.Dial(context.Background(), agentPort+1)
		dialed <- err
	}()
	virtiotest.Pending(t, r, "read")
	virtiotest.Pending(t, w, "write")

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if res := virtiotest.Await(t, r, "read"); res.Err != io.ErrUnexpectedEOF && res.Err != io.EOF {
		t.Fatalf("read after Close = %v, want EOF", res.Err)
	}
	if res := virtiotest.Await(t, w, "write"); !errors.Is(res.Err, io.ErrClosedPipe) {
		t.Fatalf("write after Close = %v", res.Err)
	}
	if err := <-dialed; err == nil {
		t.Fatal("Dial succeeded on a closed device")
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := d.Activate(g.mem, virtio.FeatureVersion1, make([]*virtio.Queue, 3), g.irq); err == nil {
		t.Fatal("Activate after Close succeeded")
	}
	d.Notify(qRx) // ignored, no panic
	c.Close()
	g.halt()
	deadline := time.Now().Add(virtiotest.WaitFor)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHeaderRoundTrips(t *testing.T) {
	h := header{srcCID: 1 << 40, dstCID: 2, srcPort: 3, dstPort: 4, len: 5, typ: 6, op: 7, flags: 8, bufAlloc: 9, fwdCnt: 10}
	b := make([]byte, hdrLen)
	h.put(b)
	if got := parseHeader(b); got != h {
		t.Fatalf("round trip %+v -> %+v", h, got)
	}
	if binary.LittleEndian.Uint32(b[24:]) != 5 || binary.LittleEndian.Uint16(b[30:]) != 7 {
		t.Fatalf("len or op at the wrong offset: %x", b)
	}
}
