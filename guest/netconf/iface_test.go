package netconf_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/guest/netconf"
)

func TestUpdateInterface(t *testing.T) {
	tests := []struct {
		name     string
		startUp  bool
		in       *protocol.Interface
		want     string // ifaceString of the result
		wantLink string // the link's name afterwards
	}{
		{
			name:    "renames the link found by MAC, sets MTU, replaces addresses and brings it up",
			startUp: false,
			in: &protocol.Interface{
				Name:   "eth0",
				HwAddr: "02:00:00:4A:0E:01", // upper case: MACs compare as bytes
				Mtu:    1400,
				Up:     true,
				Addresses: []*protocol.IPAddress{
					{Address: "10.4.0.7", PrefixLen: 24},
					{Address: "10.4.0.8", PrefixLen: 24},
					{Address: "fd00::7", PrefixLen: 64},
				},
			},
			want:     "name=eth0 mac=02:00:00:4a:0e:01 mtu=1400 up=true addrs=[10.4.0.7/24 10.4.0.8/24 fd00::7/64]",
			wantLink: "eth0",
		},
		{
			name:    "keeps the name when none is given and takes the link down with its addresses",
			startUp: true,
			in: &protocol.Interface{
				HwAddr: guestMAC,
				Up:     false,
				Addresses: []*protocol.IPAddress{
					{Address: "10.4.0.7", PrefixLen: 24},
					{Address: "fd00::7", PrefixLen: 64},
				},
			},
			want:     "name=veth0 mac=02:00:00:4a:0e:01 mtu=1500 up=false addrs=[10.4.0.7/24 fd00::7/64]",
			wantLink: "veth0",
		},
		{
			name:    "renames an up link and removes every old address when none are given",
			startUp: true,
			in:      &protocol.Interface{Name: "eth1", HwAddr: guestMAC, Up: true},
			want:    "name=eth1 mac=02:00:00:4a:0e:01 mtu=1500 up=true addrs=[]",
			// fe80:: stays but is not reported.
			wantLink: "eth1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newGuest(t)
			// Old addresses in the same and other subnets, which must go.
			n.addAddr(t, "veth0", "192.168.9.9/24")
			n.addAddr(t, "veth0", "10.4.0.9/24")
			n.addAddr(t, "veth0", "fd99::9/64")
			if tt.startUp {
				n.setUp(t, "veth0")
			}

			got, err := netconf.New(n.h).UpdateInterface(context.Background(), tt.in)
			if err != nil {
				t.Fatalf("UpdateInterface: %v", err)
			}
			if s := ifaceString(got); s != tt.want {
				t.Errorf("returned %s\nwant     %s", s, tt.want)
			}

			// Read the namespace independently of the package.
			l := n.link(t, tt.wantLink)
			if up := l.Attrs().Flags&net.FlagUp != 0; up != tt.in.Up {
				t.Errorf("link up = %t, want %t", up, tt.in.Up)
			}
			var wantAddrs []string
			for _, a := range tt.in.Addresses {
				wantAddrs = append(wantAddrs, fmt.Sprintf("%s/%d", a.Address, a.PrefixLen))
			}
			slices.Sort(wantAddrs)
			if got := n.addrs(t, tt.wantLink, false); !slices.Equal(got, wantAddrs) {
				t.Errorf("addresses on %s = %v, want exactly %v", tt.wantLink, got, wantAddrs)
			}
			list, err := n.h.AddrList(l, netlink.FAMILY_V6)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range list {
				if !a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_TENTATIVE != 0 {
					t.Errorf("address %s is tentative: nodad was not set", a.IPNet)
				}
			}
		})
	}
}

func TestUpdateInterfaceRejectsBadInputWithoutChanges(t *testing.T) {
	addrs := func(a ...*protocol.IPAddress) []*protocol.IPAddress { return a }
	tests := []struct {
		name     string
		in       *protocol.Interface
		notFound bool
		parts    []string
	}{
		{name: "missing interface", in: nil, parts: []string{"interface is missing"}},
		{name: "empty MAC", in: &protocol.Interface{Name: "eth0"}, parts: []string{"hw_addr is empty"}},
		{name: "malformed MAC", in: &protocol.Interface{HwAddr: "02:00:zz"}, parts: []string{`hw_addr "02:00:zz" is not a MAC address`}},
		{
			name:     "MAC of no guest link names it and lists the guest's MACs",
			in:       &protocol.Interface{Name: "eth0", HwAddr: "02:00:00:00:00:99"},
			notFound: true,
			parts:    []string{"hw_addr 02:00:00:00:00:99: no guest link has this MAC", "veth0=" + guestMAC, "peer0=" + peerMAC},
		},
		{
			name:  "address that is not an IP",
			in:    &protocol.Interface{HwAddr: guestMAC, Addresses: addrs(&protocol.IPAddress{Address: "10.4.0.7", PrefixLen: 24}, &protocol.IPAddress{Address: "10.4.0.300", PrefixLen: 24})},
			parts: []string{`addresses[1]: address "10.4.0.300" is not an IP address`},
		},
		{
			name:  "address given as CIDR",
			in:    &protocol.Interface{HwAddr: guestMAC, Addresses: addrs(&protocol.IPAddress{Address: "10.4.0.7/24", PrefixLen: 24})},
			parts: []string{`addresses[0]: address "10.4.0.7/24" is not an IP address`},
		},
		{
			name:  "IPv4 prefix too long",
			in:    &protocol.Interface{HwAddr: guestMAC, Addresses: addrs(&protocol.IPAddress{Address: "10.4.0.7", PrefixLen: 33})},
			parts: []string{"addresses[0]: prefix_len 33 of 10.4.0.7 is out of range: IPv4 allows 0-32"},
		},
		{
			name:  "IPv6 prefix too long",
			in:    &protocol.Interface{HwAddr: guestMAC, Addresses: addrs(&protocol.IPAddress{Address: "fd00::7", PrefixLen: 129})},
			parts: []string{"addresses[0]: prefix_len 129 of fd00::7 is out of range: IPv6 allows 0-128"},
		},
		{
			name:  "missing address",
			in:    &protocol.Interface{HwAddr: guestMAC, Addresses: addrs(nil)},
			parts: []string{"addresses[0]: address is missing"},
		},
		{
			name:  "name longer than the kernel allows",
			in:    &protocol.Interface{HwAddr: guestMAC, Name: "averyveryverylongname"},
			parts: []string{`name "averyveryverylongname" is not a valid link name`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newGuest(t)
			n.addAddr(t, "veth0", "192.168.9.9/24")

			_, err := netconf.New(n.h).UpdateInterface(context.Background(), tt.in)
			wantErr(t, err, tt.parts...)
			var want error = errdefs.ErrInvalidArgument
			if tt.notFound {
				want = errdefs.ErrNotFound
			}
			if !errors.Is(err, want) {
				t.Errorf("error %v is not %v", err, want)
			}
			l := n.link(t, "veth0") // fails the test if renamed
			if l.Attrs().Flags&net.FlagUp != 0 {
				t.Error("veth0 was brought up")
			}
			if got := n.addrs(t, "veth0", false); !slices.Equal(got, []string{"192.168.9.9/24"}) {
				t.Errorf("addresses changed to %v", got)
			}
		})
	}
}

func TestListInterfacesRoundTripsWithoutLoopbackOrLinkLocal(t *testing.T) {
	n, c := newConfigured(t)
	ctx := context.Background()

	// Up with carrier, the kernel gives eth0 an fe80:: address; the list
	// must leave it out.
	deadline := time.Now().Add(2 * time.Second)
	isLinkLocal := func(cidr string) bool {
		ip, _, _ := net.ParseCIDR(cidr)
		return ip.IsLinkLocalUnicast()
	}
	for !slices.ContainsFunc(n.addrs(t, "eth0", true), isLinkLocal) {
		if time.Now().After(deadline) {
			t.Fatal("eth0 got no link-local address; the filter would go untested")
		}
		time.Sleep(10 * time.Millisecond)
	}

	got, err := c.ListInterfaces(ctx)
	if err != nil {
		t.Fatalf("ListInterfaces: %v", err)
	}
	var names []string
	for _, in := range got.Interfaces {
		names = append(names, ifaceString(in))
	}
	slices.Sort(names)
	want := []string{
		"name=eth0 mac=02:00:00:4a:0e:01 mtu=1500 up=true addrs=[10.4.0.7/24 fd00::7/64]",
		"name=peer0 mac=02:00:00:4a:0e:02 mtu=1500 up=true addrs=[]",
	}
	if !slices.Equal(names, want) {
		t.Errorf("ListInterfaces = %q\nwant %q", names, want)
	}

	// What the list says, fed back, changes nothing.
	for _, in := range got.Interfaces {
		again, err := c.UpdateInterface(ctx, in)
		if err != nil {
			t.Fatalf("UpdateInterface(%s): %v", in.Name, err)
		}
		if ifaceString(again) != ifaceString(in) {
			t.Errorf("round trip of %s gave %s", ifaceString(in), ifaceString(again))
		}
	}
}

func TestSetupLoopbackBringsLoUp(t *testing.T) {
	n := newNS(t)
	if n.link(t, "lo").Attrs().Flags&net.FlagUp != 0 {
		t.Fatal("lo is up in a new namespace; the test proves nothing")
	}
	if err := netconf.New(n.h).SetupLoopback(context.Background()); err != nil {
		t.Fatalf("SetupLoopback: %v", err)
	}
	if n.link(t, "lo").Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo is still down")
	}
}

func TestNewWithoutHandleWorksInTheCallersNamespace(t *testing.T) {
	n := newGuest(t)
	var (
		list *protocol.Interfaces
		err  error
	)
	inNS(t, n, func() {
		c := netconf.New(nil)
		if err = c.SetupLoopback(context.Background()); err != nil {
			return
		}
		list, err = c.ListInterfaces(context.Background())
	})
	if err != nil {
		t.Fatalf("New(nil): %v", err)
	}
	var macs []string
	for _, in := range list.Interfaces {
		macs = append(macs, in.HwAddr)
	}
	slices.Sort(macs)
	if want := []string{guestMAC, peerMAC}; !slices.Equal(macs, want) {
		t.Errorf("New(nil) listed links with MACs %v, want %v (veth0 and peer0 of the test namespace)", macs, want)
	}
	if n.link(t, "lo").Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo of the test namespace is still down")
	}
}

func TestCanceledContextChangesNothing(t *testing.T) {
	n := newGuest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := netconf.New(n.h)
	_, err := c.UpdateInterface(ctx, &protocol.Interface{Name: "eth0", HwAddr: guestMAC, Up: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("UpdateInterface with a canceled context: %v, want context.Canceled", err)
	}
	n.link(t, "veth0")
	if _, err := c.UpdateRoutes(ctx, []*protocol.Route{{Family: 4, Gateway: "10.4.0.1", Device: "veth0"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("UpdateRoutes with a canceled context: %v, want context.Canceled", err)
	}
	if err := c.AddNeighbors(ctx, []*protocol.Neighbor{{Ip: "10.4.0.1", HwAddr: peerMAC, Device: "veth0"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("AddNeighbors with a canceled context: %v, want context.Canceled", err)
	}
}
