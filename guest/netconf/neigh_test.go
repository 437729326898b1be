package netconf_test

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"

	"github.com/joeyrt/joey/agent/protocol"
)

// neighbor returns the entry for ip on eth0, or nil.
func (n *testNS) neighbor(t *testing.T, ip string) *netlink.Neigh {
	t.Helper()
	list, err := n.h.NeighList(n.link(t, "eth0").Attrs().Index, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list neighbours: %v", err)
	}
	for i := range list {
		if list[i].IP.String() == ip {
			return &list[i]
		}
	}
	return nil
}

func TestAddNeighbors(t *testing.T) {
	tests := []struct {
		name      string
		first     []*protocol.Neighbor
		then      []*protocol.Neighbor // replaces entries of first when set
		ip, mac   string
		wantState int
	}{
		{
			name:      "IPv4 entry is permanent when state is 0",
			first:     []*protocol.Neighbor{{Ip: "10.4.0.1", HwAddr: peerMAC, Device: "eth0"}},
			ip:        "10.4.0.1",
			mac:       peerMAC,
			wantState: netlink.NUD_PERMANENT,
		},
		{
			name:      "IPv6 entry is permanent when state is 0",
			first:     []*protocol.Neighbor{{Ip: "fd00::1", HwAddr: peerMAC, Device: "eth0"}},
			ip:        "fd00::1",
			mac:       peerMAC,
			wantState: netlink.NUD_PERMANENT,
		},
		{
			name:      "explicit state is kept",
			first:     []*protocol.Neighbor{{Ip: "10.4.0.3", HwAddr: peerMAC, Device: "eth0", State: netlink.NUD_NOARP}},
			ip:        "10.4.0.3",
			mac:       peerMAC,
			wantState: netlink.NUD_NOARP,
		},
		{
			name:      "adding again replaces the MAC",
			first:     []*protocol.Neighbor{{Ip: "10.4.0.1", HwAddr: peerMAC, Device: "eth0"}},
			then:      []*protocol.Neighbor{{Ip: "10.4.0.1", HwAddr: "02:00:00:4a:0e:77", Device: "eth0"}},
			ip:        "10.4.0.1",
			mac:       "02:00:00:4a:0e:77",
			wantState: netlink.NUD_PERMANENT,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, c := newConfigured(t)
			ctx := context.Background()
			if err := c.AddNeighbors(ctx, tt.first); err != nil {
				t.Fatalf("AddNeighbors: %v", err)
			}
			if tt.then != nil {
				if err := c.AddNeighbors(ctx, tt.then); err != nil {
					t.Fatalf("AddNeighbors again: %v", err)
				}
			}
			got := n.neighbor(t, tt.ip)
			if got == nil {
				t.Fatalf("no neighbour entry for %s", tt.ip)
			}
			if got.HardwareAddr.String() != tt.mac {
				t.Errorf("%s lladdr %s, want %s", tt.ip, got.HardwareAddr, tt.mac)
			}
			if got.State != tt.wantState {
				t.Errorf("%s state %#x, want %#x", tt.ip, got.State, tt.wantState)
			}
		})
	}
}

func TestAddNeighborsRejectsBadInputBeforeAddingAny(t *testing.T) {
	good := &protocol.Neighbor{Ip: "10.4.0.1", HwAddr: peerMAC, Device: "eth0"}
	tests := []struct {
		name  string
		bad   *protocol.Neighbor
		parts []string
		is    error
	}{
		{name: "missing entry", bad: nil, parts: []string{"neighbors[1]: neighbor is missing"}, is: errdefs.ErrInvalidArgument},
		{name: "bad IP", bad: &protocol.Neighbor{Ip: "10.4.0", HwAddr: peerMAC, Device: "eth0"}, parts: []string{`neighbors[1]: ip "10.4.0" is not an IP address`}, is: errdefs.ErrInvalidArgument},
		{name: "bad MAC", bad: &protocol.Neighbor{Ip: "10.4.0.2", HwAddr: "02:00", Device: "eth0"}, parts: []string{`neighbors[1]: hw_addr "02:00" of 10.4.0.2 is not a MAC address`}, is: errdefs.ErrInvalidArgument},
		{name: "empty device", bad: &protocol.Neighbor{Ip: "10.4.0.2", HwAddr: peerMAC}, parts: []string{"neighbors[1]: device of 10.4.0.2 is empty"}, is: errdefs.ErrInvalidArgument},
		{name: "state wider than 16 bits", bad: &protocol.Neighbor{Ip: "10.4.0.2", HwAddr: peerMAC, Device: "eth0", State: 0x10000}, parts: []string{"state 0x10000 of 10.4.0.2 is not a NUD_* value"}, is: errdefs.ErrInvalidArgument},
		{name: "device the guest does not have", bad: &protocol.Neighbor{Ip: "10.4.0.2", HwAddr: peerMAC, Device: "eth9"}, parts: []string{`neighbors[1]: device "eth9": no such guest link`}, is: errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, c := newConfigured(t)
			err := c.AddNeighbors(context.Background(), []*protocol.Neighbor{good, tt.bad})
			wantErr(t, err, tt.parts...)
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if got := n.neighbor(t, good.Ip); got != nil {
				t.Errorf("the good entry was added before the bad one was found: %v", got)
			}
		})
	}
}
