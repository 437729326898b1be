package network

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/persist/api"
)

func routeStrings(rs []*protocol.Route) []string {
	var out []string
	for _, r := range rs {
		out = append(out, strings.Join([]string{r.Dest, "via=" + r.Gateway, "src=" + r.Source, "dev=" + r.Device,
			"scope=" + itoa(r.Scope), "v" + itoa(r.Family), "metric=" + itoa(r.Metric)}, " "))
	}
	slices.Sort(out)
	return out
}

func itoa(u uint32) string { return strconv.FormatUint(uint64(u), 10) }

// wantGuest checks what Setup read from the namespace made by configure.
func wantGuest(t *testing.T, n *Network, name string) {
	t.Helper()
	in := n.Endpoints[0].Interface()
	var addrs []string
	for _, a := range in.Addresses {
		addrs = append(addrs, a.Address+"/"+itoa(a.PrefixLen))
	}
	if in.Name != name || in.HwAddr != podMAC || in.Mtu != podMTU || !in.Up ||
		!slices.Equal(addrs, []string{podIP + "/24", "fd77::2/64"}) {
		t.Errorf("guest interface = %v, want %s %s mtu %d up with %s/24 and fd77::2/64", in, name, podMAC, podMTU, podIP)
	}
	want := []string{
		" via=" + peerIP + " src= dev=" + name + " scope=0 v4 metric=0",
		" via=fd77::1 src= dev=" + name + " scope=0 v6 metric=1024",
		"10.77.0.0/24 via= src=" + podIP + " dev=" + name + " scope=253 v4 metric=0",
		"10.99.0.0/16 via=" + peerIP + " src= dev=" + name + " scope=0 v4 metric=7",
		"fd77::/64 via= src= dev=" + name + " scope=0 v6 metric=256",
	}
	slices.Sort(want)
	if got := routeStrings(n.Routes); !slices.Equal(got, want) {
		t.Errorf("routes:\n got %q\nwant %q", got, want)
	}
	var neighs []string
	for _, nb := range n.Neighbors {
		neighs = append(neighs, nb.Ip+" "+nb.HwAddr+" "+nb.Device)
	}
	slices.Sort(neighs)
	if wantN := []string{peerIP + " " + peerMAC + " " + name, "fd77::1 " + peerMAC + " " + name}; !slices.Equal(neighs, wantN) {
		t.Errorf("neighbours = %q, want %q", neighs, wantN)
	}
}

// wantRedirect checks the qdisc and u32/mirred filter that send every
// frame arriving on from out of to.
func wantRedirect(t *testing.T, h *netlink.Handle, from, to netlink.Link) {
	t.Helper()
	qs, err := h.QdiscList(from)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(qs, func(q netlink.Qdisc) bool { return q.Type() == "ingress" }) {
		t.Errorf("%s has no ingress qdisc: %v", from.Attrs().Name, qs)
	}
	fs, err := h.FilterList(from, netlink.HANDLE_INGRESS)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || !isOurFilter(fs[0]) || fs[0].Attrs().Protocol != unix.ETH_P_ALL {
		t.Fatalf("%s ingress filters = %v, want one u32 mirred redirect for all protocols", from.Attrs().Name, fs)
	}
	m := fs[0].(*netlink.U32).Actions[0].(*netlink.MirredAction)
	if m.Ifindex != to.Attrs().Index {
		t.Errorf("%s redirects to index %d, want %s (%d)", from.Attrs().Name, m.Ifindex, to.Attrs().Name, to.Attrs().Index)
	}
}

// TestTCFilterCarriesFramesBetweenTAPAndPodInterface builds a pod
// namespace the way a CNI plugin does, runs Setup, checks everything it
// made and read, sends an ARP request and a ping through the TAP to the
// node's side and reads the answers back from the TAP, then tears down
// and compares the namespace with how it was.
func TestTCFilterCarriesFramesBetweenTAPAndPodInterface(t *testing.T) {
	tests := []struct {
		name   string
		kind   Kind
		queues int
		vhost  bool
	}{
		{"veth single queue", KindVeth, 1, false},
		{"veth two queues with vhost-net", KindVeth, 2, true},
		{"macvlan", KindMacvlan, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPodNet(t)
			var podLink netlink.Link
			if tt.kind == KindMacvlan {
				podLink = p.addMacvlan(t, "eth0", "lower0", "peer0")
			} else {
				podLink = p.addVeth(t, "eth0", "peer0", podMAC, peerMAC)
			}
			p.configure(t, podLink, "peer0")
			before := snapshot(t, p.hpod)

			hst := defaultHost
			hst.vhostNet = filepath.Join(t.TempDir(), "no-vhost-net")
			if tt.vhost {
				// A stand-in: Setup only opens it, once per queue.
				if err := os.WriteFile(hst.vhostNet, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var recorded []api.Endpoint
			n, err := hst.setup(context.Background(), Options{NetNS: p.pod, Queues: tt.queues,
				Record: func(_ context.Context, e api.Endpoint) error { recorded = append(recorded, e); return nil }})
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			t.Cleanup(func() { n.Teardown(context.Background()) })

			if len(n.Endpoints) != 1 {
				t.Fatalf("%d endpoints, want 1 (eth0)", len(n.Endpoints))
			}
			e := n.Endpoints[0]
			if e.Kind() != tt.kind || e.Device() != "tap0_joey" || e.Queues() != tt.queues || e.VhostNet() != tt.vhost {
				t.Errorf("endpoint kind %s device %q queues %d vhost %v, want %s tap0_joey %d %v",
					e.Kind(), e.Device(), e.Queues(), e.VhostNet(), tt.kind, tt.queues, tt.vhost)
			}
			wantDesc := api.Network{NetNS: p.pod, Model: "tcfilter", Endpoints: []api.Endpoint{{Interface: "eth0", Tap: "tap0_joey"}}}
			if d := n.Describe(); d.NetNS != wantDesc.NetNS || d.Model != wantDesc.Model || !slices.Equal(d.Endpoints, wantDesc.Endpoints) ||
				!slices.Equal(recorded, wantDesc.Endpoints) {
				t.Errorf("Describe = %+v, recorded %+v, want %+v", d, recorded, wantDesc)
			}
			wantGuest(t, n, "eth0")

			tap := mustLink(t, p.hpod, "tap0_joey")
			tt2, ok := tap.(*netlink.Tuntap)
			wantQueues := tt.queues
			if wantQueues == 1 {
				wantQueues = 0 // the kernel reports a count for multi-queue TAPs only
			}
			if !ok || tt2.Mode != netlink.TUNTAP_MODE_TAP || tap.Attrs().MTU != podMTU || tt2.Queues != wantQueues ||
				(tt2.Flags&netlink.TUNTAP_MULTI_QUEUE != 0) != (tt.queues > 1) || tt2.Flags&netlink.TUNTAP_VNET_HDR == 0 {
				t.Errorf("tap0_joey = %+v, want a vnet_hdr TAP with MTU %d and %d queues", tap, podMTU, tt.queues)
			}
			if mac := tap.Attrs().HardwareAddr; mac.String() == podMAC || mac[0]&2 == 0 || mac[0]&1 != 0 {
				t.Errorf("TAP MAC %s: want a locally administered unicast MAC other than the pod's %s", mac, podMAC)
			}
			wantRedirect(t, p.hpod, podLink, tap)
			wantRedirect(t, p.hpod, tap, podLink)

			dev, err := e.TakeDevice()
			if err != nil {
				t.Fatal(err)
			}
			if dev.ID != "eth0" || dev.MAC.String() != podMAC || dev.MTU != podMTU || len(dev.TapFiles) != tt.queues ||
				len(dev.VhostFiles) != map[bool]int{true: tt.queues}[tt.vhost] {
				t.Errorf("device = %+v, want eth0 %s mtu %d with %d tap files", dev, podMAC, podMTU, tt.queues)
			}
			if err := dev.Validate(); err != nil {
				t.Errorf("device does not validate: %v", err)
			}
			if _, err := e.TakeDevice(); err == nil {
				t.Error("second TakeDevice succeeded; the files have one owner")
			}

			mac, pod, peer := mustMAC(t, podMAC), net.ParseIP(podIP), net.ParseIP(peerIP)
			roundTrip(t, dev.TapFiles, arpRequest(mac, pod, peer),
				func(f []byte) bool { return isARPReply(f, mac, peer) })
			roundTrip(t, dev.TapFiles, icmpEcho(mac, mustMAC(t, peerMAC), pod, peer, 0x4a, 1),
				func(f []byte) bool { return isEchoReply(f, peer, 0x4a, 1) })

			// The VM still holds the files: Teardown must delete the TAP anyway.
			if err := n.Teardown(context.Background()); err != nil {
				t.Fatalf("Teardown: %v", err)
			}
			requireSnapshot(t, p.hpod, before)
			if err := dev.Close(); err != nil {
				t.Errorf("close device files: %v", err)
			}
			if err := n.Teardown(context.Background()); err != nil {
				t.Errorf("second Teardown: %v", err)
			}
		})
	}
}

// TestMacvtapCarriesFramesThroughItsQueues checks the macvtap model: a
// passthru macvtap with the pod's MAC, queue files from a device node made
// from sysfs, an ARP round trip, and a namespace as it was afterwards
// (the veth's promiscuity included).
func TestMacvtapCarriesFramesThroughItsQueues(t *testing.T) {
	for _, queues := range []int{1, 2} {
		t.Run(itoa(uint32(queues))+" queues", func(t *testing.T) {
			p := newPodNet(t)
			podLink := p.addVeth(t, "eth0", "peer0", podMAC, peerMAC)
			p.configure(t, podLink, "peer0")
			before := snapshot(t, p.hpod)

			n, err := Setup(context.Background(), Options{NetNS: p.pod, Model: ModelMacvtap, Queues: queues, NoVhostNet: true})
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			t.Cleanup(func() { n.Teardown(context.Background()) })
			e := n.Endpoints[0]
			if e.Device() != "mvtap0_joey" || e.Kind() != KindVeth || e.VhostNet() {
				t.Errorf("endpoint device %q kind %s vhost %v, want mvtap0_joey veth without vhost-net", e.Device(), e.Kind(), e.VhostNet())
			}
			wantGuest(t, n, "eth0")
			mv, ok := mustLink(t, p.hpod, "mvtap0_joey").(*netlink.Macvtap)
			if !ok || mv.Mode != netlink.MACVLAN_MODE_PASSTHRU || mv.ParentIndex != podLink.Attrs().Index ||
				mv.HardwareAddr.String() != podMAC || mv.MTU != podMTU || mv.Flags&net.FlagUp == 0 {
				t.Errorf("mvtap0_joey = %+v, want an up passthru macvtap on eth0 with MAC %s and MTU %d", mv, podMAC, podMTU)
			}
			if qs, _ := p.hpod.QdiscList(podLink); slices.ContainsFunc(qs, func(q netlink.Qdisc) bool { return q.Type() == "ingress" }) {
				t.Errorf("macvtap model added an ingress qdisc to eth0: %v", qs)
			}
			dev, err := e.TakeDevice()
			if err != nil {
				t.Fatal(err)
			}
			if len(dev.TapFiles) != queues || len(dev.VhostFiles) != 0 || dev.MAC.String() != podMAC {
				t.Fatalf("device = %+v, want %d queue files and MAC %s", dev, queues, podMAC)
			}
			mac, pod, peer := mustMAC(t, podMAC), net.ParseIP(podIP), net.ParseIP(peerIP)
			roundTrip(t, dev.TapFiles, arpRequest(mac, pod, peer),
				func(f []byte) bool { return isARPReply(f, mac, peer) })

			if err := n.Teardown(context.Background()); err != nil {
				t.Fatalf("Teardown: %v", err)
			}
			requireSnapshot(t, p.hpod, before)
			dev.Close()
		})
	}
}

// TestTCFilterLeavesARPForThePodAddressToTheGuest proves why the pod
// interface may keep its addresses: once Setup ran, an ARP request for the
// pod's IP from the node's side reaches the VM's TAP and the namespace's
// own kernel, which still has the address, does not answer it; the
// guest's answer is what the node learns.
func TestTCFilterLeavesARPForThePodAddressToTheGuest(t *testing.T) {
	p := newPodNet(t)
	eth0 := p.addVeth(t, "eth0", "peer0", podMAC, peerMAC)
	p.configure(t, eth0, "peer0")
	n, err := Setup(context.Background(), Options{NetNS: p.pod, NoVhostNet: true})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Teardown(context.Background())
	devs, err := n.TakeDevices()
	if err != nil {
		t.Fatal(err)
	}
	defer devs[0].Close()
	tapFile := devs[0].TapFiles[0]

	// The node sends to the pod's IP, so its kernel asks who has it.
	err = inNetNS(p.peer, func() error {
		c, err := net.Dial("udp4", podIP+":9")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	})
	if err != nil {
		t.Fatalf("send from the node's side: %v", err)
	}
	pod, peer := net.ParseIP(podIP), net.ParseIP(peerIP)
	req := readFrame(t, tapFile, func(f []byte) bool {
		return len(f) >= 42 && binary.BigEndian.Uint16(f[12:14]) == 0x0806 &&
			binary.BigEndian.Uint16(f[20:22]) == 1 && bytes.Equal(f[38:42], pod.To4())
	})
	if req == nil {
		t.Fatal("the ARP request for the pod's IP did not reach the TAP")
	}
	time.Sleep(200 * time.Millisecond)
	if state := neighState(t, p.hpeer, pod); state&(netlink.NUD_REACHABLE|netlink.NUD_STALE) != 0 {
		t.Fatalf("the node resolved %s (state %#x) though only the guest may answer", podIP, state)
	}

	// The guest answers with the pod's MAC.
	reply := []byte{0, 1, 8, 0, 6, 4, 0, 2}
	reply = append(reply, mustMAC(t, podMAC)...)
	reply = append(reply, pod.To4()...)
	reply = append(reply, mustMAC(t, peerMAC)...)
	reply = append(reply, peer.To4()...)
	if _, err := tapFile.Write(ethernet(mustMAC(t, peerMAC), mustMAC(t, podMAC), 0x0806, reply)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if neighState(t, p.hpeer, pod)&netlink.NUD_REACHABLE != 0 {
			return
		}
	}
	t.Fatalf("the node did not learn %s from the guest's answer", podIP)
}

// neighState is the node's neighbour state for ip, 0 if it has none.
func neighState(t *testing.T, h *netlink.Handle, ip net.IP) int {
	t.Helper()
	ns, err := h.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.IP.Equal(ip) {
			return n.State
		}
	}
	return 0
}

// readFrame returns the first frame (without vnet header) from f that
// match accepts, or nil after 3 s.
func readFrame(t *testing.T, f *os.File, match func([]byte) bool) []byte {
	t.Helper()
	if err := f.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	for {
		n, err := f.Read(buf)
		if err != nil {
			return nil
		}
		if n > vnetHdrLen && match(buf[vnetHdrLen:n]) {
			return append([]byte(nil), buf[vnetHdrLen:n]...)
		}
	}
}
