package netconf_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
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

// hotMAC is the MAC of a NIC hot-added after boot: at first no link has it.
const hotMAC = "02:00:00:4a:0e:03"

// addHotNIC adds a link carrying mac, as the kernel does when a rescan probes
// a hot-added NIC. It is a veth (with peer hotpeer0) because the dummy driver
// may be missing. It reports errors rather than failing the test, so it can
// run off the test's goroutine.
func addHotNIC(n *testNS, mac net.HardwareAddr) error {
	return n.h.LinkAdd(&netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "eth9", HardwareAddr: mac},
		PeerName:  "hotpeer0",
	})
}

func TestUpdateInterfaceRescansForAHotAddedNIC(t *testing.T) {
	mac := mustMAC(t, hotMAC)
	in := &protocol.Interface{
		Name:      "eth1",
		HwAddr:    hotMAC,
		Up:        true,
		Addresses: []*protocol.IPAddress{{Address: "10.4.1.7", PrefixLen: 24}},
	}
	tests := []struct {
		name string
		// present adds the NIC before UpdateInterface is called.
		present bool
		// hook is what the rescan hook does, called through a counter; nil
		// sets no hook.
		hook       func(t *testing.T, n *testNS) error
		wait       time.Duration // for SetRescanWait; 0 keeps the default
		ctxTimeout time.Duration // 0: no deadline
		wantCalls  int32
		wantErr    error // nil: the NIC ends up configured
		wantParts  []string
		minTime    time.Duration
		maxTime    time.Duration
	}{
		{
			name:      "NIC added by the hook is configured",
			hook:      func(t *testing.T, n *testNS) error { return addHotNIC(n, mac) },
			wantCalls: 1,
			maxTime:   2 * time.Second,
		},
		{
			name: "NIC that appears a while after the hook returned is waited for and configured",
			hook: func(t *testing.T, n *testNS) error {
				done := make(chan struct{})
				t.Cleanup(func() { <-done }) // before the namespace goes
				go func() {
					defer close(done)
					time.Sleep(300 * time.Millisecond)
					if err := addHotNIC(n, mac); err != nil {
						t.Errorf("add hot NIC: %v", err)
					}
				}()
				return nil
			},
			wantCalls: 1,
			minTime:   300 * time.Millisecond,
			maxTime:   2500 * time.Millisecond,
		},
		{
			name:      "NIC already present is configured without calling the hook",
			present:   true,
			hook:      func(t *testing.T, n *testNS) error { return errors.New("hook called") },
			wantCalls: 0,
			maxTime:   2 * time.Second,
		},
		{
			name:      "without a hook a missing NIC is not found at once",
			wantErr:   errdefs.ErrNotFound,
			wantParts: []string{"update interface: hw_addr " + hotMAC + ": no guest link has this MAC", "veth0=" + guestMAC},
			maxTime:   time.Second,
		},
		{
			name:      "hook that adds nothing gives not found after the wait",
			hook:      func(t *testing.T, n *testNS) error { return nil },
			wait:      300 * time.Millisecond,
			wantCalls: 1,
			wantErr:   errdefs.ErrNotFound,
			wantParts: []string{"waited 300ms after a rescan for hot-added NICs: hw_addr " + hotMAC + ": no guest link has this MAC", "veth0=" + guestMAC},
			minTime:   300 * time.Millisecond,
			maxTime:   2 * time.Second,
		},
		{
			name:      "failing hook gives not found with the hook's error, without waiting",
			hook:      func(t *testing.T, n *testNS) error { return errors.New("rescan PCI: write: no such device") },
			wait:      10 * time.Second,
			wantCalls: 1,
			wantErr:   errdefs.ErrNotFound,
			wantParts: []string{"rescanning for hot-added NICs failed (rescan PCI: write: no such device): hw_addr " + hotMAC + ": no guest link has this MAC"},
			maxTime:   2 * time.Second,
		},
		{
			name:       "context ending during the wait stops it with the context's error",
			hook:       func(t *testing.T, n *testNS) error { return nil },
			wait:       10 * time.Second,
			ctxTimeout: 200 * time.Millisecond,
			wantCalls:  1,
			wantErr:    context.DeadlineExceeded,
			wantParts:  []string{"hw_addr " + hotMAC + ": waiting for the link after a rescan"},
			minTime:    200 * time.Millisecond,
			maxTime:    2 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newGuest(t)
			if tt.present {
				if err := addHotNIC(n, mac); err != nil {
					t.Fatal(err)
				}
			}
			c := netconf.New(n.h)
			var calls atomic.Int32
			if tt.hook != nil {
				c.SetRescan(func() error {
					calls.Add(1)
					return tt.hook(t, n)
				})
			}
			if tt.wait != 0 {
				c.SetRescanWait(tt.wait)
			}
			ctx := context.Background()
			if tt.ctxTimeout != 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctxTimeout)
				defer cancel()
			}

			start := time.Now()
			got, err := c.UpdateInterface(ctx, in)
			took := time.Since(start)

			if n := calls.Load(); n != tt.wantCalls {
				t.Errorf("hook called %d times, want %d", n, tt.wantCalls)
			}
			if took < tt.minTime || took > tt.maxTime {
				t.Errorf("UpdateInterface took %s, want %s to %s", took, tt.minTime, tt.maxTime)
			}
			if tt.wantErr != nil {
				wantErr(t, err, tt.wantParts...)
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("error %v is not %v", err, tt.wantErr)
				}
				if _, err := n.h.LinkByName("eth1"); err == nil {
					t.Error("eth1 exists after a failed update")
				}
				return
			}
			if err != nil {
				t.Fatalf("UpdateInterface: %v", err)
			}
			const want = "name=eth1 mac=02:00:00:4a:0e:03 mtu=1500 up=true addrs=[10.4.1.7/24]"
			if s := ifaceString(got); s != want {
				t.Errorf("returned %s\nwant     %s", s, want)
			}
			if got := n.addrs(t, "eth1", false); !slices.Equal(got, []string{"10.4.1.7/24"}) {
				t.Errorf("addresses on eth1 = %v, want [10.4.1.7/24]", got)
			}
		})
	}
}

func TestOtherCallsDoNotWaitForAHotAddedNIC(t *testing.T) {
	n := newGuest(t)
	c := netconf.New(n.h)
	c.SetRescanWait(2 * time.Second)
	rescanned := make(chan struct{})
	c.SetRescan(func() error { close(rescanned); return nil })

	updated := make(chan error, 1)
	go func() {
		_, err := c.UpdateInterface(context.Background(), &protocol.Interface{HwAddr: hotMAC})
		updated <- err
	}()
	<-rescanned
	start := time.Now()
	if _, err := c.ListInterfaces(context.Background()); err != nil {
		t.Errorf("ListInterfaces: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("ListInterfaces took %s during the wait for a NIC; it waited for the lock", took)
	}
	if err := <-updated; !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("UpdateInterface of a NIC that never came: %v, want not found", err)
	}
}
