package console

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

func TestNewRejectsBadPortsNamingTheField(t *testing.T) {
	many := make([]Port, MaxPorts+1)
	for i := range many {
		many[i].Name = string(rune('a'+i%26)) + strings.Repeat("x", i/26)
	}
	tests := []struct {
		name  string
		ports []Port
		want  string
	}{
		{"no ports", nil, "no ports"},
		{"too many ports", many, "at most 31"},
		{"empty name", []Port{{Name: "a"}, {Name: ""}}, "ports[1].Name is empty"},
		{"name too long", []Port{{Name: strings.Repeat("n", MaxNameLen+1)}}, "ports[0].Name"},
		{"name with a space", []Port{{Name: "agent 0"}}, "ports[0].Name \"agent 0\": want printable"},
		{"name with a NUL", []Port{{Name: "agent\x000"}}, "ports[0].Name"},
		{"name with a newline", []Port{{Name: "agent.0\n"}}, "ports[0].Name"},
		{"name not ASCII", []Port{{Name: "agént"}}, "ports[0].Name"},
		{"duplicate name", []Port{{Name: "a"}, {Name: "b"}, {Name: "a"}}, "ports[2].Name \"a\": already the name of ports[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(tt.ports)
			if err == nil {
				d.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	if _, err := New([]Port{{Name: strings.Repeat("n", MaxNameLen)}}); err != nil {
		t.Fatalf("a name of exactly %d bytes is refused: %v", MaxNameLen, err)
	}
}

func TestConnIsOnePerPortAndUnknownNamesFail(t *testing.T) {
	d := newDevice(t, "agent.0", "log.0")
	a1, a2, l := hostSide(t, d, "agent.0"), hostSide(t, d, "agent.0"), hostSide(t, d, "log.0")
	if a1 != a2 || a1 == l {
		t.Fatal("Conn does not return one conn per port")
	}
	if a1.LocalAddr().String() != "agent.0" || a1.LocalAddr().Network() != "virtio-serial" {
		t.Fatalf("LocalAddr = %v/%v", a1.LocalAddr().Network(), a1.LocalAddr())
	}
	if _, err := d.Conn("nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Conn(nope) error = %v", err)
	}
}

func TestConfigSpaceAdvertisesMaxNrPorts(t *testing.T) {
	d := newDevice(t, "a", "b", "c")
	if d.Type() != virtio.TypeConsole || d.Features() != FeatureMultiport {
		t.Fatalf("type %v features %#x", d.Type(), d.Features())
	}
	cfg := make([]byte, configSize)
	d.ReadConfig(0, cfg)
	if n := binary.LittleEndian.Uint32(cfg[4:]); n != 3 {
		t.Fatalf("max_nr_ports = %d, want 3 (config %x)", n, cfg)
	}
	d.WriteConfig(8, []byte{1, 2, 3, 4}) // emerg_wr: ignored
	tests := []struct {
		name   string
		offset uint64
		n      int
		want   []byte
	}{
		{"cols and rows are zero", 0, 4, []byte{0, 0, 0, 0}},
		{"max_nr_ports alone", 4, 4, []byte{3, 0, 0, 0}},
		{"emerg_wr reads zero", 8, 4, []byte{0, 0, 0, 0}},
		{"read across the end", 10, 4, []byte{0, 0, 0, 0}},
		{"beyond the end", 64, 2, []byte{0, 0}},
		{"offset that would overflow", ^uint64(0), 4, []byte{0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bytes.Repeat([]byte{0xff}, tt.n)
			d.ReadConfig(tt.offset, got)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("ReadConfig(%d, %d) = %x, want %x", tt.offset, tt.n, got, tt.want)
			}
		})
	}
}

func TestQueueLayoutIsPortZeroControlThenAPairPerPort(t *testing.T) {
	d := newDevice(t, "a", "b", "c")
	sizes := d.QueueSizes()
	if len(sizes) != 8 {
		t.Fatalf("%d queues for 3 ports, want 8", len(sizes))
	}
	for i, s := range sizes {
		if s != 128 && s != 256 {
			t.Fatalf("queue %d has %d entries", i, s)
		}
	}
	for id, want := range [][2]int{{0, 1}, {4, 5}, {6, 7}} {
		if rx, tx := rxQueue(uint32(id)), txQueue(uint32(id)); rx != want[0] || tx != want[1] {
			t.Fatalf("port %d uses queues %d/%d, want %v", id, rx, tx, want)
		}
		for _, q := range want {
			if p := d.portOf(q); p == nil || p.id != uint32(id) {
				t.Fatalf("queue %d belongs to %v, want port %d", q, p, id)
			}
		}
	}
	for _, q := range []int{-1, 2, 3, 8, 1 << 20} {
		if p := d.portOf(q); p != nil {
			t.Fatalf("queue %d belongs to port %d", q, p.id)
		}
	}
}

func TestHandshakeAddsEveryPortAndNamesItByID(t *testing.T) {
	d := newDevice(t, "agent.0", "org.qemu.guest_agent.0", "log")
	g := boot(t, d, FeatureMultiport)
	g.handshake()

	var adds []uint32
	named := map[uint32]int{}
	for i, m := range g.log {
		switch m.event {
		case evDeviceAdd:
			adds = append(adds, m.id)
		case evPortName:
			named[m.id] = i
			if !bytes.HasSuffix(m.payload, []byte{0}) {
				t.Errorf("PORT_NAME payload %q is not NUL-terminated", m.payload)
			}
		case evPortOpen:
			if i0, ok := named[m.id]; !ok || i0 > i {
				t.Errorf("PORT_OPEN for port %d came before its name", m.id)
			}
		case evConsolePort, evResize, evDeviceRemove:
			t.Errorf("device sent %v: ports are plain serial ports", m)
		}
	}
	if len(adds) != 3 || adds[0] != 0 || adds[1] != 1 || adds[2] != 2 {
		t.Fatalf("DEVICE_ADD for ids %v, want [0 1 2]", adds)
	}
	for id, want := range []string{"agent.0", "org.qemu.guest_agent.0", "log"} {
		if g.names[uint32(id)] != want {
			t.Errorf("port %d named %q, want %q", id, g.names[uint32(id)], want)
		}
	}
	if g.irq.Count(qControlRx) == 0 {
		t.Error("control messages delivered without an interrupt")
	}
}

func TestControlMessagesWaitForControlReceiveBuffers(t *testing.T) {
	d := newDevice(t, "a", "b")
	g := boot(t, d, FeatureMultiport)
	g.send(badID, evDeviceReady, 1) // before any control receive buffer
	if _, ok := g.q[qControlRx].Next(); ok {
		t.Fatal("a message came back without a buffer")
	}
	// A buffer too small for a message comes back empty; the message
	// waits for the next one.
	g.q[qControlRx].Add(nil, []int{4})
	g.dev.Notify(qControlRx)
	if u, ok := g.q[qControlRx].Next(); !ok || u.Written != 0 {
		t.Fatalf("small buffer: used %+v %v, want returned with 0 written", u, ok)
	}
	g.fillControl(8)
	g.process()
	if len(g.names) != 2 {
		t.Fatalf("names %v after the buffers arrived; log %v", g.names, g.log)
	}
}

func TestControlBacklogIsBoundedWhenTheDriverNeverTakesIt(t *testing.T) {
	d := newDevice(t, "a", "b", "c")
	g := boot(t, d, FeatureMultiport)
	for range 100 {
		g.send(badID, evDeviceReady, 1)
	}
	n := 0
	for {
		g.fillControl(50)
		got := 0
		for {
			if _, ok := g.q[qControlRx].Next(); !ok {
				break
			}
			got++
		}
		if n += got; got < 50 {
			break
		}
	}
	if n != maxOutbox {
		t.Fatalf("%d messages delivered, want the backlog bound %d", n, maxOutbox)
	}
}

func TestControlHeaderSplitOverBuffersIsAccepted(t *testing.T) {
	d := newDevice(t, "agent.0")
	g := boot(t, d, FeatureMultiport)
	g.fillControl(8)
	g.fillRx(0, 1)
	h := header(0, evPortReady, 1)
	g.sendRaw([][]byte{h[:3], h[3:5], h[5:]})
	g.process()
	if g.names[0] != "agent.0" {
		t.Fatalf("split PORT_READY not understood; log %v", g.log)
	}
}

func TestMalformedControlMessagesAreIgnored(t *testing.T) {
	tests := []struct {
		name     string
		readable [][]byte
	}{
		{"shorter than the header", [][]byte{{1, 0, 0, 0}}},
		{"no readable buffer", nil},
		{"PORT_READY for an unknown id", [][]byte{header(7, evPortReady, 1)}},
		{"PORT_READY for the bad id", [][]byte{header(badID, evPortReady, 1)}},
		{"PORT_OPEN for an unknown id", [][]byte{header(1<<31, evPortOpen, 1)}},
		{"unknown event", [][]byte{header(0, 0x4242, 1)}},
		{"DEVICE_READY reporting failure", [][]byte{header(badID, evDeviceReady, 0)}},
		{"device-to-driver DEVICE_ADD", [][]byte{header(0, evDeviceAdd, 1)}},
		{"device-to-driver PORT_NAME", [][]byte{append(header(0, evPortName, 1), "evil"...)}},
		{"device-to-driver CONSOLE_PORT", [][]byte{header(0, evConsolePort, 1)}},
		{"device-to-driver RESIZE", [][]byte{header(0, evResize, 1)}},
		{"device-to-driver DEVICE_REMOVE", [][]byte{header(0, evDeviceRemove, 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDevice(t, "agent.0")
			g := boot(t, d, FeatureMultiport)
			g.fillControl(8)
			if tt.readable == nil {
				// A writable-only chain on the transmit queue.
				g.q[qControlTx].Add(nil, []int{16})
				g.dev.Notify(qControlTx)
				if u, ok := g.q[qControlTx].Next(); !ok || u.Written != 0 {
					t.Fatalf("used %+v %v, want returned with 0 written", u, ok)
				}
			} else {
				g.sendRaw(tt.readable)
			}
			if m, ok := g.recv(); ok {
				t.Fatalf("device answered with %v", m)
			}
			g.handshake() // and the device still works
		})
	}
}

func TestBytesFlowBothWaysOnTwoPortsWithoutMixing(t *testing.T) {
	d := newDevice(t, "agent.0", "log.0")
	g := boot(t, d, FeatureMultiport)
	g.rxShape = []int{1000, pageSize - 1000} // chains may be split
	g.handshake()
	g.open(0)
	g.open(1)
	const n = 200 << 10
	agent, logc := hostSide(t, d, "agent.0"), hostSide(t, d, "log.0")
	wa, wl := virtiotest.HostWrite(agent, virtiotest.Pattern(1, n)), virtiotest.HostWrite(logc, virtiotest.Pattern(2, n))
	ra, rl := virtiotest.HostRead(agent, n), virtiotest.HostRead(logc, n)
	s0 := &stream{id: 0, out: virtiotest.Pattern(3, n), want: n}
	s1 := &stream{id: 1, out: virtiotest.Pattern(4, n), want: n}
	g.pump(3000, s0, s1)
	for _, w := range []<-chan virtiotest.Result{wa, wl} {
		if r := virtiotest.Await(t, w, "host write"); r.Err != nil || r.N != n {
			t.Fatalf("host write = %d, %v", r.N, r.Err)
		}
	}
	if !bytes.Equal(s0.in, virtiotest.Pattern(1, n)) || !bytes.Equal(s1.in, virtiotest.Pattern(2, n)) {
		t.Fatal("guest read the wrong bytes: streams mixed or reordered")
	}
	if r := virtiotest.Await(t, ra, "host read of agent.0"); r.Err != nil || !bytes.Equal(r.Data, virtiotest.Pattern(3, n)) {
		t.Fatalf("agent.0 host read: %v, bytes equal %v", r.Err, bytes.Equal(r.Data, virtiotest.Pattern(3, n)))
	}
	if r := virtiotest.Await(t, rl, "host read of log.0"); r.Err != nil || !bytes.Equal(r.Data, virtiotest.Pattern(4, n)) {
		t.Fatalf("log.0 host read: %v, bytes equal %v", r.Err, bytes.Equal(r.Data, virtiotest.Pattern(4, n)))
	}
}

func TestOneMiBRoundTripsThroughSmallGuestBuffers(t *testing.T) {
	for _, rings := range []struct {
		name     string
		features uint64
	}{
		{"plain rings", 0},
		{"event index and indirect descriptors", virtio.FeatureEventIdx | virtio.FeatureIndirectDesc},
	} {
		t.Run(rings.name, func(t *testing.T) { oneMiBRoundTrip(t, FeatureMultiport|rings.features) })
	}
}

func oneMiBRoundTrip(t *testing.T, features uint64) {
	d := newDevice(t, "agent.0")
	g := boot(t, d, features)
	g.handshake()
	g.open(0)
	const n = 1 << 20
	c := hostSide(t, d, "agent.0")
	w, r := virtiotest.HostWrite(c, virtiotest.Pattern(5, n)), virtiotest.HostRead(c, n)
	s := &stream{id: 0, out: virtiotest.Pattern(6, n), want: n}
	g.pump(pageSize, s)
	if res := virtiotest.Await(t, w, "host write"); res.Err != nil || res.N != n {
		t.Fatalf("host write = %d, %v", res.N, res.Err)
	}
	if !bytes.Equal(s.in, virtiotest.Pattern(5, n)) {
		t.Fatal("guest did not read the host's MiB intact")
	}
	if res := virtiotest.Await(t, r, "host read"); res.Err != nil || !bytes.Equal(res.Data, virtiotest.Pattern(6, n)) {
		t.Fatalf("host did not read the guest's MiB intact (err %v)", res.Err)
	}
	if features&virtio.FeatureEventIdx == 0 && (g.irq.Count(rxQueue(0)) == 0 || g.irq.Count(txQueue(0)) == 0) {
		t.Fatal("data moved without interrupts though the driver did not suppress them")
	}
}

func TestGuestTransmitStallsWhileTheHostDoesNotRead(t *testing.T) {
	d := newDevice(t, "agent.0")
	g := boot(t, d, FeatureMultiport)
	g.handshake()
	g.open(0)
	tx := g.q[txQueue(0)]
	want := virtiotest.Pattern(7, 8*1024)
	for i := 0; i < len(want); i += 1024 {
		tx.Add([][]byte{want[i : i+1024]}, nil)
	}
	g.dev.Notify(txQueue(0))
	time.Sleep(virtiotest.Quiet)
	if u, ok := tx.Next(); ok {
		t.Fatalf("chain %d returned though the host read nothing", u.Head)
	}
	// A short read returns only the chains it consumed entirely.
	c := hostSide(t, d, "agent.0")
	if r := virtiotest.Await(t, virtiotest.HostRead(c, 1500), "host read"); r.Err != nil || !bytes.Equal(r.Data, want[:1500]) {
		t.Fatalf("first read: %v", r.Err)
	}
	if _, ok := tx.Next(); !ok {
		t.Fatal("the fully read first chain was not returned")
	}
	if u, ok := tx.Next(); ok {
		t.Fatalf("the half-read second chain %d was returned", u.Head)
	}
	if r := virtiotest.Await(t, virtiotest.HostRead(c, len(want)-1500), "host read"); r.Err != nil || !bytes.Equal(r.Data, want[1500:]) {
		t.Fatalf("second read: %v", r.Err)
	}
	for i := 1; i < 8; i++ {
		if _, ok := tx.Next(); !ok {
			t.Fatalf("only %d of 8 chains returned after the host read everything", i)
		}
	}
}

func TestHostWriteWaitsForGuestReceiveBuffers(t *testing.T) {
	d := newDevice(t, "agent.0")
	g := boot(t, d, FeatureMultiport)
	g.rxShape, g.rxFill = []int{64}, 2
	g.handshake()
	g.open(0)
	want := virtiotest.Pattern(8, 300)
	w := virtiotest.HostWrite(hostSide(t, d, "agent.0"), want)
	rx := g.q[rxQueue(0)]
	var got []byte
	for range 2 {
		got = append(got, rx.Wait(t, virtiotest.WaitFor).Data...)
	}
	virtiotest.Pending(t, w, "host write with no receive buffers left")
	g.fillRx(0, 3)
	if r := virtiotest.Await(t, w, "host write"); r.Err != nil || r.N != len(want) {
		t.Fatalf("host write = %d, %v", r.N, r.Err)
	}
	for range 3 {
		got = append(got, rx.Wait(t, virtiotest.WaitFor).Data...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("guest read %q, want %q", got, want)
	}
}

func TestSmallHostWritesDoNotWaitForTheGuest(t *testing.T) {
	d, err := New([]Port{{Name: "agent.0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	g := boot(t, d, FeatureMultiport)
	g.handshake()
	c := hostSide(t, d, "agent.0")
	// The guest has not opened the port: a request-sized write is taken
	// at once, as a socket would, and reaches the guest once it opens.
	if n, err := c.Write([]byte("request")); n != 7 || err != nil {
		t.Fatalf("write = %d, %v", n, err)
	}
	// Beyond the send buffer, a write waits; its deadline still works.
	c.SetWriteDeadline(time.Now().Add(virtiotest.Quiet))
	big := virtiotest.Pattern(9, defaultSendBuffer)
	n, err := c.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != defaultSendBuffer-7 {
		t.Fatalf("write past the send buffer = %d, %v; want %d then a timeout", n, err, defaultSendBuffer-7)
	}
	c.SetWriteDeadline(time.Time{})
	g.open(0)
	want := append([]byte("request"), big[:n]...)
	s0 := &stream{id: 0, want: len(want)}
	g.pump(4096, s0)
	if !bytes.Equal(s0.in, want) {
		t.Fatalf("guest read %d bytes, want the %d buffered, in order", len(s0.in), len(want))
	}
}

func TestDeadlinesEndBlockedCallsWithATimeout(t *testing.T) {
	tests := []struct {
		name        string
		op          func(c net.Conn) (int, error)
		setDeadline func(c net.Conn, t time.Time) error
	}{
		{"read", func(c net.Conn) (int, error) { return c.Read(make([]byte, 10)) }, net.Conn.SetReadDeadline},
		{"write", func(c net.Conn) (int, error) { return c.Write(make([]byte, 10)) }, net.Conn.SetWriteDeadline},
	}
	for _, tt := range tests {
		t.Run(tt.name+" with a deadline set before", func(t *testing.T) {
			d := newDevice(t, "agent.0")
			boot(t, d, FeatureMultiport) // the guest never opens the port
			c := hostSide(t, d, "agent.0")
			if err := tt.setDeadline(c, time.Now().Add(virtiotest.Quiet)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			n, err := tt.op(c)
			var ne net.Error
			if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("%s = %d, %v; want a timeout", tt.name, n, err)
			}
			if time.Since(start) < virtiotest.Quiet/2 {
				t.Fatalf("%s timed out after %v, before the deadline", tt.name, time.Since(start))
			}
		})
		t.Run(tt.name+" with the deadline moved into the past while blocked", func(t *testing.T) {
			d := newDevice(t, "agent.0")
			c := hostSide(t, d, "agent.0")
			ch := make(chan error, 1)
			go func() { _, err := tt.op(c); ch <- err }()
			time.Sleep(virtiotest.Quiet / 2)
			c.SetDeadline(time.Now().Add(-time.Second))
			select {
			case err := <-ch:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("%s = %v, want a timeout", tt.name, err)
				}
			case <-time.After(virtiotest.WaitFor):
				t.Fatalf("blocked %s did not notice the new deadline", tt.name)
			}
			c.SetDeadline(time.Time{})
		})
	}
}

func TestHostDataWaitsWhileTheGuestHasThePortClosed(t *testing.T) {
	d := newDevice(t, "agent.0")
	g := boot(t, d, FeatureMultiport)
	g.handshake()
	c := hostSide(t, d, "agent.0")
	rx := g.q[rxQueue(0)]

	w := virtiotest.HostWrite(c, []byte("before open"))
	virtiotest.Pending(t, w, "host write before the guest opened the port")
	g.open(0)
	virtiotest.Await(t, w, "host write")
	if u := rx.Wait(t, virtiotest.WaitFor); string(u.Data) != "before open" {
		t.Fatalf("guest read %q", u.Data)
	}
	g.fillRx(0, 1)

	g.close(0)
	w = virtiotest.HostWrite(c, []byte("kept for the next open"))
	virtiotest.Pending(t, w, "host write while the guest has the port closed")
	if u, ok := rx.Next(); ok {
		t.Fatalf("data %q delivered to a closed port, where Linux throws it away", u.Data)
	}
	g.open(0)
	if r := virtiotest.Await(t, w, "host write"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if u := rx.Wait(t, virtiotest.WaitFor); string(u.Data) != "kept for the next open" {
		t.Fatalf("guest read %q after reopening", u.Data)
	}
}

func TestBadDescriptorChainsDoNotPanic(t *testing.T) {
	beyondRAM := func(flags uint16) func(q *virtiotest.Queue) {
		return func(q *virtiotest.Queue) {
			q.AddChain([]virtiotest.Desc{{Addr: ramSize - 16, Len: 4096, Flags: flags}})
		}
	}
	loop := func(q *virtiotest.Queue) {
		q.PutDesc(0, virtiotest.Desc{Addr: 0x1000, Len: 16, Flags: virtiotest.FlagNext, Next: 0})
		q.Publish(0)
	}
	jump := func(q *virtiotest.Queue) { q.SetAvailIdx(1000) }
	indirect := func(q *virtiotest.Queue) {
		q.AddChain([]virtiotest.Desc{{Addr: 0x1000, Len: 16, Flags: virtiotest.FlagIndirect}})
	}
	tests := []struct {
		name  string
		queue int
		build func(q *virtiotest.Queue)
	}{
		{"control tx buffer beyond RAM", qControlTx, beyondRAM(0)},
		{"control tx loop", qControlTx, loop},
		{"control tx avail index jump", qControlTx, jump},
		{"control rx buffer beyond RAM", qControlRx, beyondRAM(virtiotest.FlagWrite)},
		{"control rx indirect without the feature", qControlRx, indirect},
		{"port rx buffer beyond RAM", 0, beyondRAM(virtiotest.FlagWrite)},
		{"port rx loop", 0, loop},
		{"port rx avail index jump", 0, jump},
		{"port tx buffer beyond RAM", 1, beyondRAM(0)},
		{"port tx indirect without the feature", 1, indirect},
		{"port tx avail index jump", 1, jump},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDevice(t, "agent.0", "log.0")
			g := boot(t, d, FeatureMultiport)
			if tt.queue >= 2 {
				// Break the control queue before the handshake.
				tt.build(g.q[tt.queue])
				g.dev.Notify(tt.queue)
				if tt.queue == qControlRx {
					g.send(badID, evDeviceReady, 1)
				} else {
					g.q[qControlTx].Add([][]byte{header(badID, evDeviceReady, 1)}, nil)
					g.dev.Notify(qControlTx)
				}
				return
			}
			g.handshake()
			g.open(0)
			g.open(1)
			// Drain port 0's receive buffers so the bad chain is next.
			c := hostSide(t, d, "agent.0")
			if tt.queue == 0 {
				for i := 0; i < g.rxFill; i++ {
					g.q[0].Next()
				}
				c.Write(make([]byte, g.rxFill*pageSize))
				for i := 0; i < g.rxFill; i++ {
					g.q[0].Wait(t, virtiotest.WaitFor)
				}
			}
			tt.build(g.q[tt.queue])
			g.dev.Notify(tt.queue)
			c.SetDeadline(time.Now().Add(virtiotest.Quiet))
			if tt.queue == 0 {
				if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("write over a broken receive queue = %v, want a timeout", err)
				}
			} else if _, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read over a broken transmit queue = %v, want a timeout", err)
			}
			// The other port is unaffected.
			s := &stream{id: 1, out: []byte("still fine"), want: 2}
			w, r := virtiotest.HostWrite(hostSide(t, d, "log.0"), []byte("ok")), virtiotest.HostRead(hostSide(t, d, "log.0"), len(s.out))
			g.pump(pageSize, s)
			virtiotest.Await(t, w, "host write on the other port")
			if res := virtiotest.Await(t, r, "host read on the other port"); string(res.Data) != "still fine" || string(s.in) != "ok" {
				t.Fatalf("other port carried %q and %q", res.Data, s.in)
			}
		})
	}
}

func TestReceiveChainWithoutWritableBuffersIsReturnedEmpty(t *testing.T) {
	d := newDevice(t, "agent.0")
	g := boot(t, d, FeatureMultiport)
	g.rxFill = 0
	g.handshake()
	g.open(0)
	g.q[0].Add([][]byte{[]byte("readable only")}, nil)
	g.fillRx(0, 1)
	w := virtiotest.HostWrite(hostSide(t, d, "agent.0"), []byte("data"))
	if u := g.q[0].Wait(t, virtiotest.WaitFor); u.Written != 0 {
		t.Fatalf("readable-only chain came back with %d written", u.Written)
	}
	if u := g.q[0].Wait(t, virtiotest.WaitFor); string(u.Data) != "data" {
		t.Fatalf("guest read %q", u.Data)
	}
	virtiotest.Await(t, w, "host write")
}

func TestResetThenActivateGivesAFreshPortOnTheSameConn(t *testing.T) {
	d := newDevice(t, "agent.0")
	g := boot(t, d, FeatureMultiport)
	g.handshake()
	g.open(0)
	c := hostSide(t, d, "agent.0")
	r := virtiotest.HostRead(c, 5) // blocked across the reset
	time.Sleep(virtiotest.Quiet / 2)

	d.Reset()
	old := g.q[rxQueue(0)]
	w := virtiotest.HostWrite(c, []byte("after the reset"))
	g.q[txQueue(0)].Add([][]byte{[]byte("stale")}, nil)
	g.dev.Notify(txQueue(0))
	virtiotest.Pending(t, w, "host write while the device is reset")
	virtiotest.Pending(t, r, "host read while the device is reset")
	if u, ok := old.Next(); ok {
		t.Fatalf("device used the old receive queue after the reset: %+v", u)
	}
	if _, ok := g.q[txQueue(0)].Next(); ok {
		t.Fatal("device used the old transmit queue after the reset")
	}

	g2 := g.reprobe(FeatureMultiport)
	g2.handshake()
	g2.open(0)
	s := &stream{id: 0, out: []byte("fresh"), want: len("after the reset")}
	g2.pump(pageSize, s)
	if string(s.in) != "after the reset" {
		t.Fatalf("guest read %q after re-activation", s.in)
	}
	if res := virtiotest.Await(t, r, "host read"); res.Err != nil || string(res.Data) != "fresh" {
		t.Fatalf("host read %q, %v after re-activation", res.Data, res.Err)
	}
	if res := virtiotest.Await(t, w, "host write"); res.Err != nil {
		t.Fatal(res.Err)
	}
	if err := d.Activate(g.mem, FeatureMultiport, make([]*virtio.Queue, 4), g.irq); err == nil {
		t.Fatal("Activate on an active device succeeded")
	}
}

func TestHostCloseHangsUpTheGuestPort(t *testing.T) {
	d := newDevice(t, "agent.0")
	g := boot(t, d, FeatureMultiport)
	g.handshake()
	g.open(0)
	c := hostSide(t, d, "agent.0")
	tx := g.q[txQueue(0)]
	tx.Add([][]byte{[]byte("unread")}, nil)
	g.dev.Notify(txQueue(0))

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	g.process()
	if g.hostOpen[0] {
		t.Fatalf("guest still sees the host connected; log %v", g.log)
	}
	if _, ok := tx.Next(); !ok {
		t.Fatal("unread transmit chain kept after the host hung up")
	}
	tx.Add([][]byte{[]byte("more")}, nil)
	g.dev.Notify(txQueue(0))
	if _, ok := tx.Next(); !ok {
		t.Fatal("transmit chain after the hang-up kept")
	}
	virtiotest.Closed(t, c)
	// A reloaded driver finds the port, but not the host.
	d.Reset()
	g2 := g.reprobe(FeatureMultiport)
	g2.fillControl(8)
	g2.send(badID, evDeviceReady, 1)
	g2.process()
	if g2.names[0] != "agent.0" || g2.hostOpen[0] {
		t.Fatalf("after reload: name %q host open %v", g2.names[0], g2.hostOpen[0])
	}
}

func TestConnAfterCloseReconnectsTheHostAndDropsTheOldSessionsBytes(t *testing.T) {
	d := newDevice(t, "agent.0")
	g := boot(t, d, FeatureMultiport)
	g.handshake()
	g.open(0)
	old := hostSide(t, d, "agent.0")
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	g.process()
	if g.hostOpen[0] {
		t.Fatal("guest still sees the host connected after Close")
	}
	// A reply to the old session arrives after the hang-up: it is dropped.
	tx := g.q[txQueue(0)]
	tx.Add([][]byte{[]byte("stale reply")}, nil)
	g.dev.Notify(txQueue(0))
	if _, ok := tx.Next(); !ok {
		t.Fatal("transmit chain kept while the host was away")
	}

	c := hostSide(t, d, "agent.0")
	if c == old {
		t.Fatal("Conn after Close returned the closed conn")
	}
	g.process()
	if !g.hostOpen[0] {
		t.Fatalf("guest not told the host reconnected; log %v", g.log)
	}
	const n = 4 << 10
	w, r := virtiotest.HostWrite(c, virtiotest.Pattern(5, n)), virtiotest.HostRead(c, n)
	s0 := &stream{id: 0, out: virtiotest.Pattern(6, n), want: n}
	g.pump(1000, s0)
	if res := virtiotest.Await(t, w, "host write"); res.Err != nil || res.N != n {
		t.Fatalf("host write on the new conn = %d, %v", res.N, res.Err)
	}
	if res := virtiotest.Await(t, r, "host read"); res.Err != nil || !bytes.Equal(res.Data, virtiotest.Pattern(6, n)) {
		t.Fatalf("host read on the new conn: %v (stale bytes or loss)", res.Err)
	}
	if !bytes.Equal(s0.in, virtiotest.Pattern(5, n)) {
		t.Fatal("guest read the wrong bytes on the new session")
	}
	if _, err := old.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("old conn read = %v, want it to stay closed", err)
	}
}

func TestCloseEndsHostConnsAndLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	d := newDevice(t, "agent.0", "log.0")
	g := boot(t, d, FeatureMultiport)
	g.handshake()
	g.open(0)
	a, l := hostSide(t, d, "agent.0"), hostSide(t, d, "log.0")
	r := virtiotest.HostRead(a, 1)                // blocked: the guest writes nothing
	w := virtiotest.HostWrite(l, []byte("never")) // blocked: the guest never opens log.0
	virtiotest.Pending(t, r, "host read")
	virtiotest.Pending(t, w, "host write")

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if res := virtiotest.Await(t, r, "host read"); !errors.Is(res.Err, io.EOF) {
		t.Fatalf("blocked read ended with %v, want EOF", res.Err)
	}
	if res := virtiotest.Await(t, w, "host write"); res.Err == nil {
		t.Fatal("blocked write succeeded on a closed device")
	}
	if _, err := a.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after Close = %v, want EOF", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := d.Activate(g.mem, FeatureMultiport, make([]*virtio.Queue, 6), g.irq); err == nil {
		t.Fatal("Activate after Close succeeded")
	}
	g.dev.Notify(0) // ignored, no panic
	deadline := time.Now().Add(virtiotest.WaitFor)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWithoutMultiportPortZeroIsAnOpenConsole(t *testing.T) {
	d := newDevice(t, "console", "unreachable")
	g := boot(t, d, 0)
	g.fillRx(0, 4)
	c := hostSide(t, d, "console")
	w, r := virtiotest.HostWrite(c, []byte("login: ")), virtiotest.HostRead(c, 4)
	s := &stream{id: 0, out: []byte("root"), want: len("login: ")}
	g.pump(pageSize, s)
	if string(s.in) != "login: " {
		t.Fatalf("guest read %q", s.in)
	}
	if res := virtiotest.Await(t, r, "host read"); string(res.Data) != "root" {
		t.Fatalf("host read %q", res.Data)
	}
	virtiotest.Await(t, w, "host write")
	u := hostSide(t, d, "unreachable")
	u.SetDeadline(time.Now().Add(virtiotest.Quiet))
	if _, err := u.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a port the guest cannot see = %v, want a timeout", err)
	}
	for q := range d.QueueSizes() {
		d.Notify(q) // control and port 1 queues are off: ignored
	}
}

func TestInterruptsFollowTheDriversSuppressionFlag(t *testing.T) {
	d := newDevice(t, "agent.0")
	g := boot(t, d, FeatureMultiport)
	g.handshake()
	g.open(0)
	rx := g.q[rxQueue(0)]
	before := g.irq.Count(rxQueue(0))
	rx.SuppressInterrupts(true)
	virtiotest.Await(t, virtiotest.HostWrite(hostSide(t, d, "agent.0"), []byte("quiet")), "host write")
	rx.Wait(t, virtiotest.WaitFor)
	if n := g.irq.Count(rxQueue(0)); n != before {
		t.Fatalf("%d interrupts while suppressed", n-before)
	}
	rx.SuppressInterrupts(false)
	virtiotest.Await(t, virtiotest.HostWrite(hostSide(t, d, "agent.0"), []byte("loud")), "host write")
	rx.Wait(t, virtiotest.WaitFor)
	if g.irq.Count(rxQueue(0)) != before+1 {
		t.Fatalf("%d interrupts for one chain, want 1", g.irq.Count(rxQueue(0))-before)
	}
}
