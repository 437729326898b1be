package network

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/testutil"
)

const (
	podMAC  = "02:00:00:4a:0a:02"
	peerMAC = "02:00:00:4a:0a:01"
	podIP   = "10.77.0.2"
	peerIP  = "10.77.0.1"
	podMTU  = 1400
)

// newNetNS makes a network namespace of the test's own, pinned by a bind
// mount under t.TempDir(), and returns its path and a netlink handle in
// it. Cleanup unmounts it, which ends it and everything in it.
func newNetNS(t *testing.T) (string, *netlink.Handle) {
	t.Helper()
	path := testutil.NewNetNS(t)
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
	return path, h
}

func nsFd(t *testing.T, path string) netlink.NsFd {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return netlink.NsFd(int(ns))
}

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %q: %v", name, err)
	}
	return l
}

// addAddr adds cidr to link, without duplicate address detection so IPv6
// addresses are usable at once.
func addAddr(t *testing.T, h *netlink.Handle, link netlink.Link, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if a.IP.To4() == nil {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, a); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, link.Attrs().Name, err)
	}
}

func setUp(t *testing.T, h *netlink.Handle, link netlink.Link) {
	t.Helper()
	if err := h.LinkSetUp(link); err != nil {
		t.Fatalf("set %s up: %v", link.Attrs().Name, err)
	}
}

// waitOperational waits until the link name is running and has its IPv6
// link-local address, which the kernel adds asynchronously, so that a
// snapshot taken next does not change by itself.
func waitOperational(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		l := mustLink(t, h, name)
		if l.Attrs().Flags&net.FlagRunning == 0 {
			continue
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IP.IsLinkLocalUnicast() }) {
			return
		}
	}
	t.Fatalf("link %s not operational with a link-local address after 3 s", name)
}

// podNet is a pod namespace and a second namespace playing the node's side
// of the pod's interface (a bridge, a router).
type podNet struct {
	pod, peer   string
	hpod, hpeer *netlink.Handle
}

func newPodNet(t *testing.T) *podNet {
	t.Helper()
	p := &podNet{}
	p.pod, p.hpod = newNetNS(t)
	p.peer, p.hpeer = newNetNS(t)
	return p
}

// addVeth makes the pod interface name as a veth whose other end, peerName,
// is in the peer namespace, both up.
func (p *podNet) addVeth(t *testing.T, name, peerName, mac, pmac string) netlink.Link {
	t.Helper()
	err := p.hpod.LinkAdd(&netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: name, MTU: podMTU, HardwareAddr: mustMAC(t, mac)},
		PeerName:         peerName,
		PeerHardwareAddr: mustMAC(t, pmac),
		PeerNamespace:    nsFd(t, p.peer),
	})
	if err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	setUp(t, p.hpeer, mustLink(t, p.hpeer, peerName))
	l := mustLink(t, p.hpod, name)
	setUp(t, p.hpod, l)
	waitOperational(t, p.hpod, name)
	return mustLink(t, p.hpod, name)
}

// addMacvlan makes the pod interface name as a bridge-mode macvlan on the
// veth lowerName in the peer namespace, whose other end peerName is the
// node's side.
func (p *podNet) addMacvlan(t *testing.T, name, lowerName, peerName string) netlink.Link {
	t.Helper()
	err := p.hpeer.LinkAdd(&netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: lowerName, MTU: podMTU},
		PeerName:         peerName,
		PeerHardwareAddr: mustMAC(t, peerMAC),
	})
	if err != nil {
		t.Fatalf("add veth %s: %v", lowerName, err)
	}
	lower := mustLink(t, p.hpeer, lowerName)
	setUp(t, p.hpeer, lower)
	setUp(t, p.hpeer, mustLink(t, p.hpeer, peerName))
	err = p.hpeer.LinkAdd(&netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: lower.Attrs().Index, MTU: podMTU, HardwareAddr: mustMAC(t, podMAC)},
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	})
	if err != nil {
		t.Fatalf("add macvlan %s: %v", name, err)
	}
	if err := p.hpeer.LinkSetNsFd(mustLink(t, p.hpeer, name), int(nsFd(t, p.pod))); err != nil {
		t.Fatalf("move macvlan into the pod namespace: %v", err)
	}
	l := mustLink(t, p.hpod, name)
	setUp(t, p.hpod, l)
	waitOperational(t, p.hpod, name)
	return mustLink(t, p.hpod, name)
}

// configure gives the pod interface and the node's side addresses, routes
// and static neighbours the way a CNI plugin would.
func (p *podNet) configure(t *testing.T, podLink netlink.Link, peerName string) {
	t.Helper()
	peer := mustLink(t, p.hpeer, peerName)
	addAddr(t, p.hpeer, peer, peerIP+"/24")
	addAddr(t, p.hpeer, peer, "fd77::1/64")
	addAddr(t, p.hpod, podLink, podIP+"/24")
	addAddr(t, p.hpod, podLink, "fd77::2/64")
	waitLocalRoute(t, p.hpod, "fd77::2")
	idx := podLink.Attrs().Index
	routes := []netlink.Route{
		{LinkIndex: idx, Gw: net.ParseIP(peerIP)},
		{LinkIndex: idx, Gw: net.ParseIP("fd77::1")},
		{LinkIndex: idx, Dst: mustCIDR(t, "10.99.0.0/16"), Gw: net.ParseIP(peerIP), Priority: 7},
	}
	for _, r := range routes {
		if err := p.hpod.RouteAdd(&r); err != nil {
			t.Fatalf("add route %s: %v", r, err)
		}
	}
	for _, ip := range []string{peerIP, "fd77::1"} {
		n := &netlink.Neigh{LinkIndex: idx, IP: net.ParseIP(ip), HardwareAddr: mustMAC(t, peerMAC), State: netlink.NUD_PERMANENT}
		n.Family = netlink.FAMILY_V4
		if strings.Contains(ip, ":") {
			n.Family = netlink.FAMILY_V6
		}
		if err := p.hpod.NeighAdd(n); err != nil {
			t.Fatalf("add neighbour %s: %v", ip, err)
		}
	}
}

// waitLocalRoute waits for the local-table route the kernel adds for an
// IPv6 address from a work queue, so a snapshot taken next is stable.
func waitLocalRoute(t *testing.T, h *netlink.Handle, ip string) {
	t.Helper()
	want := net.ParseIP(ip)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		rs, err := h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(rs, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.IP.Equal(want) }) {
			return
		}
	}
	t.Fatalf("no local route for %s after 2 s", ip)
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// snapshot renders everything Setup could change in the namespace h is in:
// links, addresses, routes of every table, permanent neighbours, qdiscs
// and ingress filters.
func snapshot(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		out = append(out, fmt.Sprintf("link %d %s %s mac=%s mtu=%d flags=%s promisc=%d parent=%d master=%d",
			a.Index, a.Name, l.Type(), a.HardwareAddr, a.MTU, a.Flags, a.Promisc, a.ParentIndex, a.MasterIndex))
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, ad := range addrs {
			out = append(out, fmt.Sprintf("addr %s %s scope=%d", a.Name, ad.IPNet, ad.Scope))
		}
		qs, err := h.QdiscList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			out = append(out, fmt.Sprintf("qdisc %s %s %s", a.Name, q.Type(), q.Attrs()))
		}
		fs, err := h.FilterList(l, netlink.HANDLE_INGRESS)
		if err == nil {
			for _, f := range fs {
				out = append(out, fmt.Sprintf("filter %s %s %s", a.Name, f.Type(), f.Attrs()))
			}
		}
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		// The kernel adds the local route of an IPv6 link-local address
		// once its duplicate address detection ends, seconds after the
		// address (which is compared) appears; the code under test never
		// makes one.
		if r.Table == unix.RT_TABLE_LOCAL && r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, "route "+r.String())
	}
	neighs, err := h.NeighList(0, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT != 0 {
			out = append(out, "neigh "+n.String())
		}
	}
	slices.Sort(out)
	return out
}

// requireSnapshot fails t if the namespace differs from want, listing what
// was added and what went missing. The kernel reports carrier changes
// through a work queue that may wait up to a second, so it looks again
// for a while before it fails.
func requireSnapshot(t *testing.T, h *netlink.Handle, want []string) {
	t.Helper()
	got := snapshot(t, h)
	for deadline := time.Now().Add(2 * time.Second); !slices.Equal(got, want) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		got = snapshot(t, h)
	}
	var added, missing []string
	for _, g := range got {
		if !slices.Contains(want, g) {
			added = append(added, g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	if len(added) > 0 || len(missing) > 0 {
		t.Fatalf("namespace not as it was:\n added: %s\n missing: %s", strings.Join(added, "\n   "), strings.Join(missing, "\n   "))
	}
}

// settledSnapshot waits until the namespace stops changing on its own — a
// link just made loses its carrier and gains its IPv6 link-local route
// asynchronously — and returns its snapshot, so that a later comparison
// sees only what the code under test did.
func settledSnapshot(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	prev, stable := snapshot(t, h), 0
	for i := 0; i < 20 && stable < 2; i++ {
		time.Sleep(500 * time.Millisecond)
		cur := snapshot(t, h)
		if slices.Equal(prev, cur) {
			stable++
		} else {
			stable = 0
		}
		prev = cur
	}
	return prev
}
