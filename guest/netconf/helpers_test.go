package netconf_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/guest/netconf"
	"github.com/joeyrt/joey/internal/testutil"
)

const (
	// guestMAC is the MAC of the link playing the VM's NIC, as the pod's
	// interface would have it.
	guestMAC = "02:00:00:4a:0e:01"
	peerMAC  = "02:00:00:4a:0e:02"
)

// testNS is a network namespace of one test with a netlink handle in it.
type testNS struct {
	ns netns.NsHandle
	h  *netlink.Handle
}

// newNS makes a network namespace of t's own (testutil.NewNetNS: pinned on a
// file under t.TempDir, nothing named in /run/netns) and opens a netlink
// handle in it; t's cleanup closes both and ends the namespace. All work goes
// through the handle, or through inNS.
func newNS(t *testing.T) *testNS {
	t.Helper()
	path := testutil.NewNetNS(t)
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open netns %s: %v", path, err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", path, err)
	}
	t.Cleanup(h.Close)
	return &testNS{ns: ns, h: h}
}

// newGuest makes a namespace with a veth pair: veth0 (MAC guestMAC) plays the
// VM's NIC, peer0 (up) the other end of the wire.
func newGuest(t *testing.T) *testNS {
	t.Helper()
	n := newNS(t)
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: "veth0", HardwareAddr: mustMAC(t, guestMAC)},
		PeerName:         "peer0",
		PeerHardwareAddr: mustMAC(t, peerMAC),
	}
	if err := n.h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	n.setUp(t, "peer0")
	return n
}

// newConfigured is newGuest with the guest link configured as eth0 with
// 10.4.0.7/24 and fd00::7/64, up.
func newConfigured(t *testing.T) (*testNS, *netconf.Config) {
	t.Helper()
	n := newGuest(t)
	c := netconf.New(n.h)
	_, err := c.UpdateInterface(context.Background(), &protocol.Interface{
		Name:   "eth0",
		HwAddr: guestMAC,
		Up:     true,
		Addresses: []*protocol.IPAddress{
			{Address: "10.4.0.7", PrefixLen: 24},
			{Address: "fd00::7", PrefixLen: 64},
		},
	})
	if err != nil {
		t.Fatalf("configure eth0: %v", err)
	}
	return n, c
}

func (n *testNS) link(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := n.h.LinkByName(name)
	if err != nil {
		t.Fatalf("find link %s: %v", name, err)
	}
	return l
}

func (n *testNS) setUp(t *testing.T, name string) {
	t.Helper()
	if err := n.h.LinkSetUp(n.link(t, name)); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

func (n *testNS) addAddr(t *testing.T, name, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.h.AddrAdd(n.link(t, name), a); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, name, err)
	}
}

// addrs returns the addresses of link name as sorted CIDR strings, with
// link-local ones only when linkLocal is set.
func (n *testNS) addrs(t *testing.T, name string, linkLocal bool) []string {
	t.Helper()
	list, err := n.h.AddrList(n.link(t, name), netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list addresses of %s: %v", name, err)
	}
	var out []string
	for _, a := range list {
		if a.IP.IsLinkLocalUnicast() && !linkLocal {
			continue
		}
		out = append(out, a.IPNet.String())
	}
	slices.Sort(out)
	return out
}

// inNS runs f on a thread moved into n, restoring the thread afterwards.
func inNS(t *testing.T, n *testNS, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current netns: %v", err)
	}
	defer orig.Close()
	if err := netns.Set(n.ns); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("enter test netns: %v", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Fatalf("restore netns: %v", err) // thread stays locked and dies
		}
		runtime.UnlockOSThread()
	}()
	f()
}

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ifaceString renders an interface with its addresses sorted, for comparing.
func ifaceString(in *protocol.Interface) string {
	var addrs []string
	for _, a := range in.GetAddresses() {
		addrs = append(addrs, fmt.Sprintf("%s/%d", a.Address, a.PrefixLen))
	}
	slices.Sort(addrs)
	return fmt.Sprintf("name=%s mac=%s mtu=%d up=%t addrs=[%s]",
		in.GetName(), in.GetHwAddr(), in.GetMtu(), in.GetUp(), strings.Join(addrs, " "))
}

// routeString renders a route compactly, for comparing sets of routes.
func routeString(r *protocol.Route) string {
	return fmt.Sprintf("dest=%s gw=%s src=%s dev=%s scope=%d family=%d metric=%d",
		r.Dest, r.Gateway, r.Source, r.Device, r.Scope, r.Family, r.Metric)
}

// routesOn returns the sorted routes of list through device.
func routesOn(list *protocol.Routes, device string) []string {
	var out []string
	for _, r := range list.GetRoutes() {
		if r.Device == device {
			out = append(out, routeString(r))
		}
	}
	slices.Sort(out)
	return out
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}
