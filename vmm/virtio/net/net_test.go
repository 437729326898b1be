package net_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/netnsexec"
	"github.com/joeyrt/joey/internal/tap"
	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
	vnet "github.com/joeyrt/joey/vmm/virtio/net"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

const (
	ramSize = 64 << 20
	timeout = 10 * time.Second
	tapName = "jn0"
)

// link is what a test asks of the wire and the driver.
type link struct {
	// features the driver accepts (VERSION_1 is added).
	features uint64
	// mtu of the TAP and the device; 0 is 1500.
	mtu int
	// bufSize is the size of each receive buffer the driver supplies, and
	// rxBufs how many it supplies at the start.
	bufSize, rxBufs int
	// ring is the size the driver gives its queues; 0 is the largest.
	ring uint16
}

// guest is the device on a TAP in a namespace of the test's own, and a
// simulated driver in front of it.
type guest struct {
	t     *testing.T
	ns    string
	tap   *tap.Tap
	nl    *netlink.Handle
	dev   *vnet.Device
	mem   *memory.Memory
	alloc *virtiotest.Alloc
	rx    *virtiotest.Queue
	tx    *virtiotest.Queue
	irq   *virtiotest.Interrupts
	l     link
}

func newGuest(t *testing.T, l link) *guest {
	t.Helper()
	// Memory first and namespace next: their cleanups then run after the
	// device's Close and the TAP's.
	g := &guest{t: t, l: l, mem: virtiotest.Memory(t, ramSize), alloc: virtiotest.NewAlloc(0x1000, ramSize)}
	g.ns = testutil.NewNetNS(t)
	// Keep the kernel's IPv6 chatter off the link; tests skip what they
	// do not look for anyway.
	_ = netnsexec.Run(g.ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
	})
	tp, err := tap.Create(context.Background(), tap.Options{Name: tapName, Queues: 1, VnetHdr: true, NetNS: g.ns, MAC: hostMAC, MTU: l.mtu})
	if err != nil {
		t.Fatal(err)
	}
	g.tap = tp
	t.Cleanup(func() { tp.Close() })
	g.nl = nsHandle(t, g.ns)
	lk, err := g.nl.LinkByName(tapName)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := netlink.ParseAddr(hostIP.String() + "/24")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.nl.AddrAdd(lk, addr); err != nil {
		t.Fatal(err)
	}
	// A static neighbour, so the kernel talks to the guest without ARP.
	neigh := &netlink.Neigh{LinkIndex: lk.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: guestIP.AsSlice(), HardwareAddr: guestMAC}
	if err := g.nl.NeighAdd(neigh); err != nil {
		t.Fatal(err)
	}
	dev, err := vnet.New(tp.TakeFiles()[0], vnet.Options{MAC: guestMAC, MTU: l.mtu})
	if err != nil {
		t.Fatal(err)
	}
	g.dev = dev
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Error(err)
		}
	})
	g.activate()
	return g
}

func nsHandle(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// activate lays out fresh queues and starts the device, as a driver does
// after a reset, then supplies the first receive buffers.
func (g *guest) activate() {
	g.t.Helper()
	features := g.l.features | virtio.FeatureVersion1
	ring := g.l.ring
	if ring == 0 {
		ring = vnet.QueueSize
	}
	g.rx = virtiotest.NewQueue(g.mem, g.alloc, ring)
	g.tx = virtiotest.NewQueue(g.mem, g.alloc, ring)
	g.irq = virtiotest.NewInterrupts()
	qs := []*virtio.Queue{g.rx.Device(g.t, features), g.tx.Device(g.t, features)}
	if err := g.dev.Activate(g.mem, features, qs, g.irq); err != nil {
		g.t.Fatal(err)
	}
	g.give(g.l.rxBufs)
}

// give supplies n receive buffers and kicks.
func (g *guest) give(n int) {
	for range n {
		g.rx.Add(nil, []int{g.l.bufSize})
	}
	if n > 0 {
		g.dev.Notify(0)
	}
}

// send transmits frame behind a header, split over two buffers the way
// Linux does, and waits for the device to hand the chain back.
func (g *guest) send(hdr [vnet.HeaderLen]byte, frame []byte) {
	g.t.Helper()
	head := g.tx.Add([][]byte{hdr[:], frame}, nil)
	g.dev.Notify(1)
	if u := g.tx.Wait(g.t, timeout); u.Head != head || u.Written != 0 {
		g.t.Fatalf("transmit chain came back as %+v, want head %d with nothing written", u, head)
	}
}

// packet is one frame the device received, reassembled from its buffers.
type packet struct {
	hdr   []byte
	frame []byte
	// lens are the used lengths of the buffers it took.
	lens []uint32
}

func (p packet) numBuffers() int { return int(binary.LittleEndian.Uint16(p.hdr[10:])) }
func (p packet) flags() byte     { return p.hdr[0] }
func (p packet) gsoType() byte   { return p.hdr[1] }
func (p packet) gsoSize() int    { return int(binary.LittleEndian.Uint16(p.hdr[4:])) }
func (p packet) csumStart() int  { return int(binary.LittleEndian.Uint16(p.hdr[6:])) }
func (p packet) csumOffset() int { return int(binary.LittleEndian.Uint16(p.hdr[8:])) }

// recv returns the next received frame that match accepts, passing over
// others, and gives back a receive buffer for every one it consumed.
func (g *guest) recv(match func(packet) bool) packet {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		u := g.rx.Wait(g.t, time.Until(deadline))
		if len(u.Data) < vnet.HeaderLen {
			g.t.Fatalf("receive buffer came back with %d bytes, less than a header", len(u.Data))
		}
		data, lens := u.Data, []uint32{u.Written}
		nb := int(binary.LittleEndian.Uint16(u.Data[10:]))
		for len(lens) < nb {
			u := g.rx.Wait(g.t, time.Until(deadline))
			data, lens = append(data, u.Data...), append(lens, u.Written)
		}
		g.give(len(lens))
		p := packet{hdr: data[:vnet.HeaderLen], frame: data[vnet.HeaderLen:], lens: lens}
		if match(p) {
			return p
		}
	}
}

func isARPReply(p packet) bool {
	f := p.frame
	return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == etherARP && binary.BigEndian.Uint16(f[20:]) == 2
}

func isEchoReply(seq uint16) func(packet) bool {
	return func(p packet) bool {
		ip, ok := parseIPv4(p.frame)
		return ok && ip.proto == protoICMP && len(ip.payload) >= 8 && ip.payload[0] == 0 &&
			binary.BigEndian.Uint16(ip.payload[6:]) == seq
	}
}

// wantPlainHeader fails unless hdr says "one buffer, no offload".
func wantPlainHeader(t *testing.T, p packet) {
	t.Helper()
	want := make([]byte, vnet.HeaderLen)
	want[10] = 1
	if !bytes.Equal(p.hdr, want) {
		t.Fatalf("header % x, want % x (no offloads, num_buffers 1)", p.hdr, want)
	}
}

func TestARPRequestFromTheGuestGetsTheKernelsReply(t *testing.T) {
	g := newGuest(t, link{bufSize: 2048, rxBufs: 8})
	g.send([vnet.HeaderLen]byte{}, arpRequest(hostIP))
	p := g.recv(isARPReply)
	wantPlainHeader(t, p)
	want := ether(guestMAC, hostMAC, etherARP, nil)
	want = append(want, 0, 1, 8, 0, 6, 4, 0, 2)
	want = append(append(want, hostMAC...), hostIP.AsSlice()...)
	want = append(append(want, guestMAC...), guestIP.AsSlice()...)
	if !bytes.Equal(p.frame, want) {
		t.Fatalf("ARP reply\n% x\nwant\n% x", p.frame, want)
	}
	if len(p.lens) != 1 || p.lens[0] != uint32(vnet.HeaderLen+len(want)) {
		t.Fatalf("used lengths %v, want one of %d", p.lens, vnet.HeaderLen+len(want))
	}
	if g.irq.Count(0) == 0 || g.irq.Count(1) == 0 {
		t.Fatalf("interrupts rx %d tx %d, want both signalled", g.irq.Count(0), g.irq.Count(1))
	}
}

func TestICMPEchoFromTheGuestGetsAnIntactReply(t *testing.T) {
	g := newGuest(t, link{bufSize: 2048, rxBufs: 8})
	data := []byte("joey virtio-net echo payload 0123456789")
	g.send([vnet.HeaderLen]byte{}, icmpEcho(0x4a4f, 1, data))
	p := g.recv(isEchoReply(1))
	wantPlainHeader(t, p)
	ip, _ := parseIPv4(p.frame)
	if !bytes.Equal(p.frame[0:6], guestMAC) || !bytes.Equal(p.frame[6:12], hostMAC) || ip.src != hostIP || ip.dst != guestIP {
		t.Fatalf("reply from %s/%s to %s/%s", net.HardwareAddr(p.frame[6:12]), ip.src, net.HardwareAddr(p.frame[0:6]), ip.dst)
	}
	if checksum(0, ip.header) != 0 || checksum(0, ip.payload) != 0 {
		t.Fatal("reply has a bad IP or ICMP checksum, without checksum offload negotiated")
	}
	if id := binary.BigEndian.Uint16(ip.payload[4:]); id != 0x4a4f || !bytes.Equal(ip.payload[8:], data) {
		t.Fatalf("reply id %#x data %q", id, ip.payload[8:])
	}
}

func TestJumboFrameSpreadsOverMergedReceiveBuffers(t *testing.T) {
	g := newGuest(t, link{features: vnet.FeatureMrgRxbuf | vnet.FeatureMTU, mtu: 9000, bufSize: 1500, rxBufs: 16})
	data := bytes.Repeat([]byte("0123456789abcdef"), 500) // 8000 bytes
	g.send([vnet.HeaderLen]byte{}, icmpEcho(7, 3, data))
	p := g.recv(isEchoReply(3))
	// 12 + 14 + 20 + 8 + 8000 bytes in 1500-byte buffers.
	total := vnet.HeaderLen + 14 + 20 + 8 + len(data)
	if p.numBuffers() != 6 || len(p.lens) != 6 {
		t.Fatalf("num_buffers %d over %d buffers, want 6", p.numBuffers(), len(p.lens))
	}
	for i, n := range p.lens {
		want := uint32(1500)
		if i == 5 {
			want = uint32(total - 5*1500)
		}
		if n != want {
			t.Fatalf("buffer %d used %d bytes, want %d (lengths %v)", i, n, want, p.lens)
		}
	}
	ip, _ := parseIPv4(p.frame)
	if !bytes.Equal(ip.payload[8:], data) || checksum(0, ip.payload) != 0 {
		t.Fatal("echo reply reassembled from the merged buffers is not intact")
	}
}

func TestTCPFromTheHostArrivesInTheFormTheGuestNegotiated(t *testing.T) {
	const mss = 1460
	tests := []struct {
		name     string
		features uint64
		bufSize  int
		gso      bool // one frame carries more than an MSS, as TCPv4 GSO
		partial  bool // checksum left to the guest (NEEDS_CSUM)
		merged   bool // that frame spans several buffers
	}{
		{"no offloads", 0, 2048, false, false, false},
		{"checksum offload", vnet.FeatureGuestCsum, 2048, false, true, false},
		{"TSO into merged buffers", vnet.FeatureGuestCsum | vnet.FeatureGuestTSO4 | vnet.FeatureMrgRxbuf, 2048, true, true, true},
		{"TSO into big buffers", vnet.FeatureGuestCsum | vnet.FeatureGuestTSO4, 65562, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuest(t, link{features: tt.features, bufSize: tt.bufSize, rxBufs: 32})
			conn := g.acceptTCP(7777, mss)
			sent := bytes.Repeat([]byte("the host's stream of bytes. "), 2000)
			if _, err := conn.Write(sent); err != nil {
				t.Fatal(err)
			}
			var seg tcp
			p := g.recv(func(p packet) bool {
				ip, ok := parseIPv4(p.frame)
				if !ok {
					return false
				}
				s, ok := parseTCP(ip)
				seg = s
				return ok && s.sport != 7777 && len(s.payload) > 0
			})
			t.Logf("first data frame: flags %d gso_type %d gso_size %d, %d payload bytes in %d buffers %v",
				p.flags(), p.gsoType(), p.gsoSize(), len(seg.payload), p.numBuffers(), p.lens)
			if !bytes.HasPrefix(sent, seg.payload) {
				t.Fatal("first data segment does not carry the start of the stream")
			}
			switch {
			case tt.gso && (p.gsoType() != 1 || p.gsoSize() != mss || len(seg.payload) <= mss):
				t.Fatalf("gso_type %d gso_size %d with %d payload bytes, want a TCPv4 GSO frame over MSS %d", p.gsoType(), p.gsoSize(), len(seg.payload), mss)
			case !tt.gso && (p.gsoType() != 0 || len(seg.payload) > mss):
				t.Fatalf("gso_type %d with %d payload bytes, want segments of at most %d", p.gsoType(), len(seg.payload), mss)
			}
			if merged := p.numBuffers() > 1; merged != tt.merged || len(p.lens) != p.numBuffers() {
				t.Fatalf("num_buffers %d over %d buffers, want merged = %v", p.numBuffers(), len(p.lens), tt.merged)
			}
			ip, _ := parseIPv4(p.frame)
			if tt.partial {
				if p.flags() != 1 || p.csumStart() != 14+20 || p.csumOffset() != 16 {
					t.Fatalf("flags %d csum_start %d csum_offset %d, want NEEDS_CSUM at 34+16", p.flags(), p.csumStart(), p.csumOffset())
				}
				// Finish the checksum as the guest would, then check it.
				f := p.frame
				binary.BigEndian.PutUint16(f[p.csumStart()+p.csumOffset():], checksum(0, f[p.csumStart():]))
			} else if p.flags() != 0 {
				t.Fatalf("flags %d without GUEST_CSUM, want 0", p.flags())
			}
			if checksum(pseudo(ip.src, ip.dst, protoTCP, len(ip.payload)), ip.payload) != 0 {
				t.Fatal("TCP checksum does not verify")
			}
		})
	}
}

func TestGuestOffloadedFramesReachTheHostStackIntact(t *testing.T) {
	tests := []struct {
		name    string
		payload int
		gso     bool
	}{
		{"partial checksum", 1000, false},
		{"TCPv4 segmentation", 4000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuest(t, link{features: vnet.FeatureCsum | vnet.FeatureHostTSO4, bufSize: 2048, rxBufs: 32})
			conn, syn := g.acceptTCPWithSYN(7777, 1460)
			data := bytes.Repeat([]byte("guest bytes "), tt.payload/12+1)[:tt.payload]
			var hdr [vnet.HeaderLen]byte
			hdr[0] = 1 // NEEDS_CSUM
			binary.LittleEndian.PutUint16(hdr[6:], 14+20)
			binary.LittleEndian.PutUint16(hdr[8:], 16)
			if tt.gso {
				hdr[1] = 1 // TCPv4
				binary.LittleEndian.PutUint16(hdr[2:], 14+20+20)
				binary.LittleEndian.PutUint16(hdr[4:], 1460)
			}
			g.send(hdr, tcpData(7777, syn.sport, 1001, syn.seq+1, tcpACK|tcpPSH, 0, data, true))
			got := make([]byte, len(data))
			conn.SetReadDeadline(time.Now().Add(timeout))
			if _, err := io.ReadFull(conn, got); err != nil {
				t.Fatalf("host read %d bytes: %v", len(data), err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("host stack received other bytes than the guest sent")
			}
		})
	}
}

// acceptTCP lets a socket in the namespace connect to the guest's port and
// plays the guest's side of the handshake, advertising mss.
func (g *guest) acceptTCP(port uint16, mss uint16) net.Conn {
	g.t.Helper()
	c, _ := g.acceptTCPWithSYN(port, mss)
	return c
}

// acceptTCPWithSYN is acceptTCP that also returns the host's SYN, whose
// port and sequence number the guest's segments must match.
func (g *guest) acceptTCPWithSYN(port uint16, mss uint16) (net.Conn, tcp) {
	g.t.Helper()
	type dialed struct {
		c   net.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		var c net.Conn
		err := netnsexec.Run(g.ns, func() error {
			var err error
			c, err = net.DialTimeout("tcp4", net.JoinHostPort(guestIP.String(), "7777"), timeout)
			return err
		})
		done <- dialed{c, err}
	}()
	var syn tcp
	g.recv(func(p packet) bool {
		ip, ok := parseIPv4(p.frame)
		if !ok {
			return false
		}
		s, ok := parseTCP(ip)
		syn = s
		return ok && s.dport == port && s.flags&(tcpSYN|tcpACK) == tcpSYN
	})
	g.send([vnet.HeaderLen]byte{}, tcpSegment(port, syn.sport, 1000, syn.seq+1, tcpSYN|tcpACK, mss))
	d := <-done
	if d.err != nil {
		g.t.Fatalf("connect from the namespace: %v", d.err)
	}
	g.t.Cleanup(func() { d.c.Close() })
	return d.c, syn
}

func TestFramesWaitInTheTAPWhileTheGuestHasNoBuffers(t *testing.T) {
	g := newGuest(t, link{bufSize: 2048})
	for seq := uint16(1); seq <= 5; seq++ {
		g.send([vnet.HeaderLen]byte{}, icmpEcho(9, seq, []byte("are you there")))
	}
	// The replies exist by now; with nowhere to put them they must wait.
	time.Sleep(200 * time.Millisecond)
	if u, ok := g.rx.Next(); ok {
		t.Fatalf("device used %+v though the driver supplied no buffer", u)
	}
	g.give(8)
	for seq := uint16(1); seq <= 5; seq++ {
		g.recv(isEchoReply(seq))
	}
}

func TestFramesThatCanNeverFitAreDroppedAndTheBuffersKept(t *testing.T) {
	tests := []struct {
		name string
		l    link
	}{
		{"one buffer, no merging", link{bufSize: 200, rxBufs: 1}},
		{"the whole ring, merging", link{features: vnet.FeatureMrgRxbuf, ring: 8, bufSize: 100, rxBufs: 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuest(t, tt.l)
			// The echo reply is over 1000 bytes: more than the buffers
			// hold, however many the device takes.
			g.send([vnet.HeaderLen]byte{}, icmpEcho(5, 1, make([]byte, 1000)))
			time.Sleep(100 * time.Millisecond)
			g.send([vnet.HeaderLen]byte{}, arpRequest(hostIP))
			p := g.recv(func(p packet) bool {
				if isEchoReply(1)(p) {
					t.Fatalf("echo reply of %d bytes arrived in %d buffers of %d", len(p.frame), len(p.lens), tt.l.bufSize)
				}
				return isARPReply(p)
			})
			wantPlainHeader(t, p)
		})
	}
}

func TestMalformedTransmitChainsAreDroppedAndReturned(t *testing.T) {
	g := newGuest(t, link{bufSize: 2048, rxBufs: 8})
	before := rxPackets(t, g)
	badGSO := [vnet.HeaderLen]byte{1: 1} // TCPv4 GSO without csum_start or gso_size
	tests := []struct {
		name     string
		readable [][]byte
		writable []int
	}{
		{"shorter than the header", [][]byte{make([]byte, 8)}, nil},
		{"header without a frame", [][]byte{make([]byte, vnet.HeaderLen)}, nil},
		{"runt frame", [][]byte{make([]byte, vnet.HeaderLen), make([]byte, 10)}, nil},
		{"writable buffers only", nil, []int{64}},
		{"larger than any frame", [][]byte{make([]byte, vnet.HeaderLen), make([]byte, 200_000)}, nil},
		{"header the kernel refuses", [][]byte{badGSO[:], arpRequest(hostIP)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := g.tx.Add(tt.readable, tt.writable)
			g.dev.Notify(1)
			if u := g.tx.Wait(t, timeout); u.Head != head || u.Written != 0 {
				t.Fatalf("chain came back as %+v, want head %d with nothing written", u, head)
			}
		})
	}
	if after := rxPackets(t, g); after != before {
		t.Fatalf("the TAP took %d frames from malformed chains", after-before)
	}
	// The device carries on.
	g.send([vnet.HeaderLen]byte{}, arpRequest(hostIP))
	g.recv(isARPReply)
	if err := g.dev.Err(); err != nil {
		t.Fatalf("Err = %v after malformed but well-linked chains", err)
	}
}

// rxPackets is how many frames the namespace's kernel took from the TAP.
func rxPackets(t *testing.T, g *guest) uint64 {
	t.Helper()
	lk, err := g.nl.LinkByName(tapName)
	if err != nil {
		t.Fatal(err)
	}
	return lk.Attrs().Statistics.RxPackets
}

func TestTooSmallReceiveBuffersAreReturnedEmpty(t *testing.T) {
	g := newGuest(t, link{bufSize: 2048})
	// Two buffers no header fits, then a good one.
	small := g.rx.Add(nil, []int{8})
	empty := g.rx.Add(nil, []int{0})
	g.give(4)
	g.send([vnet.HeaderLen]byte{}, arpRequest(hostIP))
	seen := map[uint16]bool{}
	for len(seen) < 2 {
		u := g.rx.Wait(t, timeout)
		if u.Head != small && u.Head != empty {
			t.Fatalf("head %d used before the unusable buffers came back", u.Head)
		}
		if u.Written != 0 {
			t.Fatalf("unusable buffer %d came back with %d bytes", u.Head, u.Written)
		}
		seen[u.Head] = true
	}
	wantPlainHeader(t, g.recv(isARPReply))
}

func TestBrokenRingsStopTheDeviceUntilReset(t *testing.T) {
	tests := []struct {
		name  string
		queue int
	}{
		{"receive", 0},
		{"transmit", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuest(t, link{bufSize: 2048})
			// A buffer running past guest RAM.
			bad := []virtiotest.Desc{{Addr: ramSize - 100, Len: 4096}}
			if tt.queue == 0 {
				bad[0].Flags = virtiotest.FlagWrite
				g.rx.AddChain(bad)
				g.dev.Notify(0)
				// The receive side takes buffers only for a frame.
				g.send([vnet.HeaderLen]byte{}, arpRequest(hostIP))
			} else {
				g.tx.AddChain(bad)
				g.dev.Notify(1)
			}
			deadline := time.Now().Add(timeout)
			for g.dev.Err() == nil {
				if time.Now().After(deadline) {
					t.Fatal("device did not report the broken ring")
				}
				time.Sleep(time.Millisecond)
			}
			if err := g.dev.Err(); !errors.Is(err, virtio.ErrBadChain) {
				t.Fatalf("Err = %v, want ErrBadChain", err)
			}
			g.dev.Reset()
			g.l.rxBufs = 8
			g.activate()
			g.send([vnet.HeaderLen]byte{}, arpRequest(hostIP))
			g.recv(isARPReply)
		})
	}
}

// sessionGoroutines counts the goroutines running the device's queues.
func sessionGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/joeyrt/joey/vmm/virtio/net.(*session).receive") ||
			strings.Contains(g, "github.com/joeyrt/joey/vmm/virtio/net.(*session).transmit") {
			n++
		}
	}
	return n
}

func TestResetStopsBothGoroutinesPromptlyAndActivateResumes(t *testing.T) {
	tests := []struct {
		name  string
		setup func(g *guest)
	}{
		{"receive blocked reading the TAP", func(*guest) {}},
		{"receive waiting for buffers", func(g *guest) {
			// The reply is read from the TAP, with nowhere to go.
			g.send([vnet.HeaderLen]byte{}, arpRequest(hostIP))
			time.Sleep(100 * time.Millisecond)
		}},
		{"transmit mid-drain", func(g *guest) {
			for range 100 {
				g.tx.Add([][]byte{make([]byte, vnet.HeaderLen), arpRequest(hostIP)}, nil)
			}
			g.dev.Notify(1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuest(t, link{bufSize: 2048})
			// Activate starts them; they show once they run.
			deadline := time.Now().Add(timeout)
			for sessionGoroutines() < 2 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if n := sessionGoroutines(); n != 2 {
				t.Fatalf("%d device goroutines while active, want 2", n)
			}
			tt.setup(g)
			start := time.Now()
			g.dev.Reset()
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Reset took %v", d)
			}
			if n := sessionGoroutines(); n != 0 {
				t.Fatalf("%d device goroutines after Reset", n)
			}
			// Nothing is served until the driver starts the device again.
			for _, ok := g.tx.Next(); ok; _, ok = g.tx.Next() {
			}
			g.tx.Add([][]byte{make([]byte, vnet.HeaderLen), arpRequest(hostIP)}, nil)
			g.dev.Notify(1)
			time.Sleep(20 * time.Millisecond)
			if u, ok := g.tx.Next(); ok {
				t.Fatalf("device used %+v after Reset", u)
			}
			g.l.rxBufs = 8
			g.activate()
			g.send([vnet.HeaderLen]byte{}, arpRequest(hostIP))
			g.recv(isARPReply)
		})
	}
}

func TestCloseLeavesNoGoroutinesAndClosesTheTAP(t *testing.T) {
	g := newGuest(t, link{bufSize: 2048, rxBufs: 4})
	if err := g.dev.Close(); err != nil {
		t.Fatal(err)
	}
	if n := sessionGoroutines(); n != 0 {
		t.Fatalf("%d device goroutines after Close", n)
	}
	if err := g.dev.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := g.dev.Activate(g.mem, virtio.FeatureVersion1, []*virtio.Queue{g.rx.Device(t, 0), g.tx.Device(t, 0)}, g.irq); err == nil {
		t.Fatal("Activate after Close succeeded")
	}
	g.dev.Notify(0) // harmless once closed
	// The device closed the TAP's only queue file, and a TAP that is not
	// persistent goes with its last file.
	var nf netlink.LinkNotFoundError
	if _, err := g.nl.LinkByName(tapName); !errors.As(err, &nf) {
		t.Fatalf("TAP link after Close: %v, want it gone with its last file", err)
	}
}

func TestActivateChecksWhatTheDriverSetUp(t *testing.T) {
	g := newGuest(t, link{bufSize: 2048})
	v1 := virtio.FeatureVersion1
	rxq, txq := g.rx.Device(t, v1), g.tx.Device(t, v1)
	if err := g.dev.Activate(g.mem, v1, []*virtio.Queue{rxq, txq}, g.irq); err == nil || !strings.Contains(err.Error(), "reset first") {
		t.Fatalf("second Activate: %v", err)
	}
	g.dev.Reset()
	tests := []struct {
		name     string
		features uint64
		queues   []*virtio.Queue
		want     string
	}{
		{"legacy driver", 0, []*virtio.Queue{rxq, txq}, "VERSION_1"},
		{"transmit queue disabled", v1, []*virtio.Queue{rxq, nil}, "must both be enabled"},
		{"one queue", v1, []*virtio.Queue{rxq}, "must both be enabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := g.dev.Activate(g.mem, tt.features, tt.queues, g.irq)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Activate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestConfigSpaceDescribesTheNIC(t *testing.T) {
	tests := []struct {
		name    string
		mtu     int
		wantMTU uint16
	}{
		{"default MTU", 0, 1500},
		{"jumbo MTU", 9000, 9000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuest(t, link{mtu: tt.mtu, bufSize: 2048})
			cfg := make([]byte, 16)
			for i := range cfg {
				cfg[i] = 0xAA
			}
			g.dev.ReadConfig(0, cfg)
			want := append(append([]byte{}, guestMAC...), 1, 0, 1, 0, byte(tt.wantMTU), byte(tt.wantMTU>>8), 0, 0, 0, 0)
			if !bytes.Equal(cfg, want) {
				t.Fatalf("config % x, want % x (mac, status LINK_UP, 1 queue pair, mtu, zeros)", cfg, want)
			}
			b := []byte{0xAA, 0xAA}
			g.dev.ReadConfig(^uint64(0), b)
			if b[0] != 0 || b[1] != 0 {
				t.Fatalf("read at a wrapping offset = % x, want zeros", b)
			}
			g.dev.WriteConfig(0, []byte{0x66, 0x66, 0x66, 0x66, 0x66, 0x66})
			g.dev.ReadConfig(0, cfg[:6])
			if !bytes.Equal(cfg[:6], guestMAC) {
				t.Fatalf("MAC after a guest write % x, want it unchanged", cfg[:6])
			}
		})
	}
}

func TestNewRefusesBadOptionsAndFilesThatAreNotVnetTAPs(t *testing.T) {
	regular, err := os.Create(t.TempDir() + "/not-a-tap")
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()
	ns := testutil.NewNetNS(t)
	plain, err := tap.Create(context.Background(), tap.Options{Name: "jn-plain", Queues: 1, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	blocking, err := tap.Create(context.Background(), tap.Options{Name: "jn-block", Queues: 1, VnetHdr: true, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer blocking.Close()
	// The same TAP queue through a blocking descriptor, as a caller
	// might hand over one it got from os.NewFile.
	var dup int
	rc, err := blocking.Files()[0].SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { dup, err = unix.Dup(int(fd)) }); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(dup, false); err != nil {
		t.Fatal(err)
	}
	blockingFile := os.NewFile(uintptr(dup), "blocking-tap")
	defer blockingFile.Close()

	tests := []struct {
		name string
		f    *os.File
		opts vnet.Options
		want string
	}{
		{"no MAC", regular, vnet.Options{}, "is 0 bytes"},
		{"multicast MAC", regular, vnet.Options{MAC: net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}}, "multicast"},
		{"zero MAC", regular, vnet.Options{MAC: make(net.HardwareAddr, 6)}, "all zeros"},
		{"MTU too small", regular, vnet.Options{MAC: guestMAC, MTU: 67}, "MTU 67 out of range"},
		{"MTU too large", regular, vnet.Options{MAC: guestMAC, MTU: 65536}, "MTU 65536 out of range"},
		{"regular file", regular, vnet.Options{MAC: guestMAC}, "is not a TAP queue"},
		{"TAP without vnet header", plain.Files()[0], vnet.Options{MAC: guestMAC}, "must be a TAP opened with IFF_VNET_HDR"},
		{"TAP in blocking mode", blockingFile, vnet.Options{MAC: guestMAC}, "O_NONBLOCK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := vnet.New(tt.f, tt.opts)
			if err == nil {
				d.Close()
				t.Fatalf("New succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestNewSetsTheTAPHeaderToVirtio1Size(t *testing.T) {
	ns := testutil.NewNetNS(t)
	tp, err := tap.Create(context.Background(), tap.Options{Name: "jn-hdr", Queues: 1, VnetHdr: true, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	f := tp.TakeFiles()[0]
	dev, err := vnet.New(f, vnet.Options{MAC: guestMAC})
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	defer dev.Close()
	if n, err := tap.VnetHdrSize(f); err != nil || n != vnet.HeaderLen {
		t.Fatalf("TAP header size %d, %v; want %d", n, err, vnet.HeaderLen)
	}
	want := vnet.FeatureCsum | vnet.FeatureGuestCsum | vnet.FeatureMTU | vnet.FeatureMAC |
		vnet.FeatureGuestTSO4 | vnet.FeatureGuestTSO6 | vnet.FeatureGuestECN |
		vnet.FeatureHostTSO4 | vnet.FeatureHostTSO6 | vnet.FeatureHostECN |
		vnet.FeatureMrgRxbuf | vnet.FeatureStatus
	if got := dev.Features(); got != want {
		t.Fatalf("features %#x, want %#x", got, want)
	}
	if dev.Type() != virtio.TypeNet || len(dev.QueueSizes()) != 2 {
		t.Fatalf("type %v queues %v", dev.Type(), dev.QueueSizes())
	}
}
