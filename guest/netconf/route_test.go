package netconf_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
)

// probe is a destination and the gateway the kernel must choose for it.
type probe struct {
	dst, gw string
}

func TestUpdateRoutes(t *testing.T) {
	tests := []struct {
		name   string
		routes []*protocol.Route
		want   []*protocol.Route // must be in the returned list
		probes []probe
	}{
		{
			name:   "IPv4 default route via a gateway on the link's subnet",
			routes: []*protocol.Route{{Family: 4, Gateway: "10.4.0.1", Device: "eth0"}},
			want:   []*protocol.Route{{Family: 4, Gateway: "10.4.0.1", Device: "eth0"}},
			probes: []probe{{"192.0.2.1", "10.4.0.1"}},
		},
		{
			name:   "extra /24 via a gateway",
			routes: []*protocol.Route{{Dest: "10.20.0.0/24", Gateway: "10.4.0.254", Device: "eth0"}},
			want:   []*protocol.Route{{Dest: "10.20.0.0/24", Gateway: "10.4.0.254", Device: "eth0", Family: 4}},
			probes: []probe{{"10.20.0.5", "10.4.0.254"}, {"10.4.0.9", ""}},
		},
		{
			name:   "IPv6 default route takes the kernel's default metric",
			routes: []*protocol.Route{{Family: 6, Gateway: "fd00::1", Device: "eth0"}},
			want:   []*protocol.Route{{Family: 6, Gateway: "fd00::1", Device: "eth0", Metric: 1024}},
			probes: []probe{{"2001:db8::1", "fd00::1"}},
		},
		{
			name: "gateway reachable only through a link route given after it",
			routes: []*protocol.Route{
				{Dest: "172.16.5.0/24", Gateway: "192.168.50.1", Device: "eth0"},
				{Dest: "192.168.50.0/24", Device: "eth0"},
			},
			want: []*protocol.Route{
				{Dest: "172.16.5.0/24", Gateway: "192.168.50.1", Device: "eth0", Family: 4},
				{Dest: "192.168.50.0/24", Device: "eth0", Family: 4, Scope: unix.RT_SCOPE_LINK},
			},
			probes: []probe{{"172.16.5.9", "192.168.50.1"}, {"192.168.50.3", ""}},
		},
		{
			name:   "source and metric are kept",
			routes: []*protocol.Route{{Dest: "10.30.0.0/16", Gateway: "10.4.0.1", Source: "10.4.0.7", Metric: 50, Device: "eth0"}},
			want:   []*protocol.Route{{Dest: "10.30.0.0/16", Gateway: "10.4.0.1", Source: "10.4.0.7", Metric: 50, Device: "eth0", Family: 4}},
			probes: []probe{{"10.30.1.1", "10.4.0.1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, c := newConfigured(t)
			ctx := context.Background()
			got, err := c.UpdateRoutes(ctx, tt.routes)
			if err != nil {
				t.Fatalf("UpdateRoutes: %v", err)
			}
			listed, err := c.ListRoutes(ctx)
			if err != nil {
				t.Fatalf("ListRoutes: %v", err)
			}
			if a, b := routesOn(got, "eth0"), routesOn(listed, "eth0"); !slices.Equal(a, b) {
				t.Errorf("UpdateRoutes returned %q\nListRoutes says     %q", a, b)
			}
			have := routesOn(listed, "eth0")
			for _, w := range tt.want {
				if !slices.Contains(have, routeString(w)) {
					t.Errorf("route %q missing from %q", routeString(w), have)
				}
			}
			for _, p := range tt.probes {
				rs, err := n.h.RouteGet(net.ParseIP(p.dst))
				if err != nil {
					t.Fatalf("route get %s: %v", p.dst, err)
				}
				if gw := ipString(rs[0].Gw); gw != p.gw {
					t.Errorf("route to %s goes via %q, want %q", p.dst, gw, p.gw)
				}
			}
		})
	}
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

func TestUpdateRoutesReplacesThePreviousSetOnNamedLinksOnly(t *testing.T) {
	n, c := newConfigured(t)
	ctx := context.Background()
	// A route on a link the requests never name, which must survive.
	n.addAddr(t, "peer0", "10.9.0.1/24")
	_, other, _ := net.ParseCIDR("10.99.0.0/24")
	peerRoute := &netlink.Route{LinkIndex: n.link(t, "peer0").Attrs().Index, Dst: other, Gw: net.ParseIP("10.9.0.2")}
	if err := n.h.RouteAdd(peerRoute); err != nil {
		t.Fatalf("add route on peer0: %v", err)
	}

	first := []*protocol.Route{
		{Family: 4, Gateway: "10.4.0.1", Device: "eth0"},
		{Dest: "10.20.0.0/24", Gateway: "10.4.0.254", Device: "eth0"},
		{Dest: "10.30.0.0/24", Gateway: "10.4.0.254", Device: "eth0"},
		{Family: 6, Gateway: "fd00::1", Device: "eth0"},
		{Dest: "fd20::/64", Gateway: "fd00::fe", Device: "eth0"},
	}
	if _, err := c.UpdateRoutes(ctx, first); err != nil {
		t.Fatalf("first UpdateRoutes: %v", err)
	}
	second := []*protocol.Route{
		// The kernel's own link route, as the host reads it from the pod.
		{Dest: "10.4.0.0/24", Source: "10.4.0.7", Scope: unix.RT_SCOPE_LINK, Family: 4, Device: "eth0"},
		{Family: 4, Gateway: "10.4.0.2", Device: "eth0"},
		{Dest: "10.30.0.0/24", Gateway: "10.4.0.254", Device: "eth0"},
		{Dest: "fd20::/64", Gateway: "fd00::fe", Device: "eth0"},
	}
	got, err := c.UpdateRoutes(ctx, second)
	if err != nil {
		t.Fatalf("second UpdateRoutes: %v", err)
	}
	want := []string{
		routeString(&protocol.Route{Dest: "10.4.0.0/24", Source: "10.4.0.7", Scope: unix.RT_SCOPE_LINK, Family: 4, Device: "eth0"}),
		routeString(&protocol.Route{Family: 4, Gateway: "10.4.0.2", Device: "eth0"}),
		routeString(&protocol.Route{Dest: "10.30.0.0/24", Gateway: "10.4.0.254", Family: 4, Device: "eth0"}),
		routeString(&protocol.Route{Dest: "fd00::/64", Family: 6, Metric: 256, Device: "eth0"}), // the kernel's
		routeString(&protocol.Route{Dest: "fd20::/64", Gateway: "fd00::fe", Family: 6, Metric: 1024, Device: "eth0"}),
	}
	slices.Sort(want)
	if have := routesOn(got, "eth0"); !slices.Equal(have, want) {
		t.Errorf("routes on eth0:\n%q\nwant exactly\n%q", have, want)
	}
	if have := routesOn(got, "peer0"); !slices.Contains(have, routeString(&protocol.Route{Dest: "10.99.0.0/24", Gateway: "10.9.0.2", Family: 4, Device: "peer0"})) {
		t.Errorf("route on peer0 is gone: %q", have)
	}

	// The link route was already there: it must still be the kernel's.
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: n.link(t, "eth0").Attrs().Index}, netlink.RT_FILTER_OIF)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Dst != nil && r.Dst.String() == "10.4.0.0/24" && r.Protocol != unix.RTPROT_KERNEL {
			t.Errorf("link route 10.4.0.0/24 was replaced (protocol %s)", r.Protocol)
		}
	}
}

func TestListRoutesLeavesOutKernelNoise(t *testing.T) {
	n, c := newConfigured(t)
	if err := c.SetupLoopback(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := c.ListRoutes(context.Background())
	if err != nil {
		t.Fatalf("ListRoutes: %v", err)
	}
	// The kernel's IPv6 routes exist, so the filter has work to do.
	all, err := n.h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range all {
		if r.Dst != nil {
			kinds = append(kinds, r.Dst.String())
		}
	}
	for _, noise := range []string{"fe80::/64", "ff00::/8", "::1/128"} {
		if !slices.Contains(kinds, noise) {
			t.Fatalf("the kernel made no %s route (routes: %v); the test proves nothing", noise, kinds)
		}
	}
	want := []string{
		routeString(&protocol.Route{Dest: "10.4.0.0/24", Source: "10.4.0.7", Scope: unix.RT_SCOPE_LINK, Family: 4, Device: "eth0"}),
		routeString(&protocol.Route{Dest: "fd00::/64", Family: 6, Metric: 256, Device: "eth0"}),
	}
	var have []string
	for _, r := range got.Routes {
		have = append(have, routeString(r))
	}
	slices.Sort(have)
	if !slices.Equal(have, want) {
		t.Errorf("ListRoutes = %q\nwant %q", have, want)
	}
}

func TestUpdateRoutesRejectsBadInput(t *testing.T) {
	tests := []struct {
		name      string
		routes    []*protocol.Route
		parts     []string
		is        error
		unchanged bool // nothing was applied
	}{
		{
			name:   "unreachable gateway gives the kernel's error with the route",
			routes: []*protocol.Route{{Dest: "10.20.0.0/24", Gateway: "10.77.0.1", Device: "eth0"}},
			parts:  []string{"routes[0]: add route 10.20.0.0/24 via 10.77.0.1 dev eth0", "network is unreachable"},
			is:     unix.ENETUNREACH,
		},
		{
			name:      "dest that is not a CIDR",
			routes:    []*protocol.Route{{Family: 4, Gateway: "10.4.0.2", Device: "eth0"}, {Dest: "10.20.0.0/33", Gateway: "10.4.0.1", Device: "eth0"}},
			parts:     []string{`routes[1]: dest "10.20.0.0/33" is not a CIDR`},
			is:        errdefs.ErrInvalidArgument,
			unchanged: true,
		},
		{
			name:      "dest with host bits",
			routes:    []*protocol.Route{{Dest: "10.20.0.5/24", Gateway: "10.4.0.1", Device: "eth0"}},
			parts:     []string{"dest 10.20.0.5/24 has host bits set; did you mean 10.20.0.0/24?"},
			is:        errdefs.ErrInvalidArgument,
			unchanged: true,
		},
		{
			name:      "default route without family",
			routes:    []*protocol.Route{{Device: "eth0"}},
			parts:     []string{"routes[0]: dest is empty and family is 0: set family 4 or 6"},
			is:        errdefs.ErrInvalidArgument,
			unchanged: true,
		},
		{
			name:      "gateway of the other family",
			routes:    []*protocol.Route{{Family: 4, Gateway: "fd00::1", Device: "eth0"}},
			parts:     []string{"gateway fd00::1 is IPv6 but the route is IPv4"},
			is:        errdefs.ErrInvalidArgument,
			unchanged: true,
		},
		{
			name:      "gateway that is not an IP",
			routes:    []*protocol.Route{{Family: 4, Gateway: "10.4.0.x", Device: "eth0"}},
			parts:     []string{`gateway "10.4.0.x" is not an IP address`},
			is:        errdefs.ErrInvalidArgument,
			unchanged: true,
		},
		{
			name:      "family that is neither 4 nor 6",
			routes:    []*protocol.Route{{Family: 5, Device: "eth0"}},
			parts:     []string{"family 5 is not 4 or 6"},
			is:        errdefs.ErrInvalidArgument,
			unchanged: true,
		},
		{
			name:      "empty device",
			routes:    []*protocol.Route{{Family: 4, Gateway: "10.4.0.2"}},
			parts:     []string{"routes[0]: device is empty"},
			is:        errdefs.ErrInvalidArgument,
			unchanged: true,
		},
		{
			name:      "missing route",
			routes:    []*protocol.Route{nil},
			parts:     []string{"routes[0]: route is missing"},
			is:        errdefs.ErrInvalidArgument,
			unchanged: true,
		},
		{
			name:      "device the guest does not have",
			routes:    []*protocol.Route{{Family: 4, Gateway: "10.4.0.2", Device: "eth0"}, {Dest: "10.20.0.0/24", Gateway: "10.4.0.1", Device: "eth9"}},
			parts:     []string{`routes[1]: device "eth9": no such guest link`},
			is:        errdefs.ErrNotFound,
			unchanged: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := newConfigured(t)
			ctx := context.Background()
			before, err := c.UpdateRoutes(ctx, []*protocol.Route{{Family: 4, Gateway: "10.4.0.1", Device: "eth0"}})
			if err != nil {
				t.Fatalf("set up routes: %v", err)
			}
			_, err = c.UpdateRoutes(ctx, tt.routes)
			wantErr(t, err, tt.parts...)
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if !tt.unchanged {
				return
			}
			after, err := c.ListRoutes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := routesOn(before, "eth0"), routesOn(after, "eth0"); !slices.Equal(a, b) {
				t.Errorf("routes changed from %q to %q", a, b)
			}
		})
	}
}
