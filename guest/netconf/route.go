package netconf

import (
	"context"
	"fmt"
	"net"
	"slices"

	"github.com/joeyrt/joey/internal/nldump"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
)

// ipv6DefaultMetric is the metric the kernel gives an IPv6 route added with
// none (IP6_RT_PRIO_USER); a wanted metric of 0 matches it.
const ipv6DefaultMetric = 1024

// wantRoute is one requested route, parsed.
type wantRoute struct {
	index  int // position in the request, for errors
	device string
	r      netlink.Route
}

// UpdateRoutes makes the main-table routes through the devices named in
// routes exactly routes: other routes on those links are removed, except the
// kernel's own (the link routes it made for the link's addresses, fe80::/64),
// and links no route names are left alone. Routes without a gateway are added
// first so that the gateways of the others are reachable whatever the order
// of the request. An empty dest with family 4 or 6 is a default route.
//
// Every route is checked before anything changes; a kernel error part way
// leaves the routes removed and added so far. It returns the guest's routes
// as ListRoutes does.
func (c *Config) UpdateRoutes(ctx context.Context, routes []*protocol.Route) (*protocol.Routes, error) {
	want := make([]wantRoute, 0, len(routes))
	for i, r := range routes {
		nr, err := parseRoute(r)
		if err != nil {
			return nil, fmt.Errorf("update routes: routes[%d]: %w", i, err)
		}
		want = append(want, wantRoute{index: i, device: r.Device, r: nr})
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("update routes: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.updateRoutes(ctx, want); err != nil {
		return nil, fmt.Errorf("update routes: %w", err)
	}
	out, err := c.listRoutes()
	if err != nil {
		return nil, fmt.Errorf("update routes: read back: %w", err)
	}
	return out, nil
}

func (c *Config) updateRoutes(ctx context.Context, want []wantRoute) error {
	devices := map[int]string{}
	for i := range want {
		index, err := c.deviceIndex(want[i].device)
		if err != nil {
			return fmt.Errorf("routes[%d]: %w", want[i].index, err)
		}
		want[i].r.LinkIndex = index
		devices[index] = want[i].device
	}

	have, err := nldump.Do(func() ([]netlink.Route, error) { return c.h.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	satisfied := make([]bool, len(want))
	for _, e := range have {
		dev, ok := devices[e.LinkIndex]
		if !ok {
			continue
		}
		kept := false
		for i := range want {
			if sameRoute(e, want[i].r) {
				satisfied[i], kept = true, true
			}
		}
		if kept || e.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		if err := c.h.RouteDel(&e); err != nil {
			return fmt.Errorf("remove route %s: %w", describe(e, dev), err)
		}
		log.G(ctx).WithField("route", describe(e, dev)).Debug("removed guest route")
	}

	var add []wantRoute
	for i := range want {
		if !satisfied[i] {
			add = append(add, want[i])
		}
	}
	// A gateway must be reachable through a route already there.
	slices.SortStableFunc(add, func(a, b wantRoute) int {
		return boolInt(a.r.Gw != nil) - boolInt(b.r.Gw != nil)
	})
	for _, w := range add {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.h.RouteReplace(&w.r); err != nil {
			return fmt.Errorf("routes[%d]: add route %s: %w", w.index, describe(w.r, w.device), err)
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sameRoute reports whether the listed route h is the wanted route w, ignoring
// who made it: a kernel link route equal to a wanted one stays as it is.
func sameRoute(h, w netlink.Route) bool {
	if h.LinkIndex != w.LinkIndex || h.Type != unix.RTN_UNICAST || len(h.MultiPath) > 0 {
		return false
	}
	hd := dstOrDefault(h)
	if hd.String() != w.Dst.String() || !h.Gw.Equal(w.Gw) || !h.Src.Equal(w.Src) {
		return false
	}
	if w.Family == netlink.FAMILY_V6 {
		// IPv6 routes have no scope; the kernel reports universe for all.
		metric := w.Priority
		if metric == 0 {
			metric = ipv6DefaultMetric
		}
		return h.Priority == metric
	}
	return h.Priority == w.Priority && h.Scope == w.Scope
}

// dstOrDefault returns h's destination, with the all-zero network the kernel
// leaves out of a default route filled in.
func dstOrDefault(h netlink.Route) *net.IPNet {
	if h.Dst != nil {
		return h.Dst
	}
	if h.Family == netlink.FAMILY_V4 {
		return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	return &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
}

// parseRoute checks r and turns it into a netlink route without a link index.
func parseRoute(r *protocol.Route) (netlink.Route, error) {
	var nr netlink.Route
	if r == nil {
		return nr, fmt.Errorf("route is missing: %w", errdefs.ErrInvalidArgument)
	}
	if r.Device == "" {
		return nr, fmt.Errorf("device is empty: name the guest link the route goes through: %w", errdefs.ErrInvalidArgument)
	}
	if r.Family != 0 && r.Family != 4 && r.Family != 6 {
		return nr, fmt.Errorf("family %d is not 4 or 6: %w", r.Family, errdefs.ErrInvalidArgument)
	}
	fam := r.Family
	// checkFamily makes every address of the route agree with the first one
	// that fixed the family.
	checkFamily := func(field, value string, ip net.IP) error {
		if fam != 0 && family(ip) != fam {
			return fmt.Errorf("%s %s is IPv%d but the route is IPv%d: %w", field, value, family(ip), fam, errdefs.ErrInvalidArgument)
		}
		fam = family(ip)
		return nil
	}
	if r.Dest != "" {
		ip, n, err := net.ParseCIDR(r.Dest)
		if err != nil {
			return nr, fmt.Errorf("dest %q is not a CIDR (like 10.4.0.0/24 or fd00::/64; empty for a default route): %w",
				r.Dest, errdefs.ErrInvalidArgument)
		}
		if !ip.Equal(n.IP) {
			return nr, fmt.Errorf("dest %s has host bits set; did you mean %s?: %w", r.Dest, n, errdefs.ErrInvalidArgument)
		}
		if err := checkFamily("dest", r.Dest, n.IP); err != nil {
			return nr, err
		}
		nr.Dst = n
	}
	if r.Gateway != "" {
		ip, ok := parseIP(r.Gateway)
		if !ok {
			return nr, fmt.Errorf("gateway %q is not an IP address: %w", r.Gateway, errdefs.ErrInvalidArgument)
		}
		if err := checkFamily("gateway", r.Gateway, ip); err != nil {
			return nr, err
		}
		nr.Gw = ip
	}
	if r.Source != "" {
		ip, ok := parseIP(r.Source)
		if !ok {
			return nr, fmt.Errorf("source %q is not an IP address: %w", r.Source, errdefs.ErrInvalidArgument)
		}
		if err := checkFamily("source", r.Source, ip); err != nil {
			return nr, err
		}
		nr.Src = ip
	}
	if fam == 0 {
		return nr, fmt.Errorf("dest is empty and family is 0: set family 4 or 6 for a default route: %w", errdefs.ErrInvalidArgument)
	}
	if nr.Dst == nil {
		bits := 32
		if fam == 6 {
			bits = 128
		}
		nr.Dst = &net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)}
	}
	if r.Scope > 255 {
		return nr, fmt.Errorf("scope %d is out of range 0-255: %w", r.Scope, errdefs.ErrInvalidArgument)
	}
	nr.Family = netlinkFamily(fam)
	nr.Scope = netlink.Scope(r.Scope)
	if fam == 4 && nr.Gw == nil && nr.Scope == netlink.SCOPE_UNIVERSE {
		// 0 cannot say "unset" in the protocol. Like `ip route`, take a route
		// without a gateway as on-link: only a link-scope route can make the
		// gateways of the other routes reachable.
		nr.Scope = netlink.SCOPE_LINK
	}
	nr.Priority = int(r.Metric)
	nr.Table = unix.RT_TABLE_MAIN
	nr.Type = unix.RTN_UNICAST
	return nr, nil
}

// describe renders r the way `ip route` does, for errors and logs.
func describe(r netlink.Route, device string) string {
	s := dstOrDefault(r).String()
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	s += " dev " + device
	if r.Src != nil {
		s += " src " + r.Src.String()
	}
	if r.Priority != 0 {
		s += fmt.Sprintf(" metric %d", r.Priority)
	}
	return s
}

// ListRoutes returns the guest's IPv4 and IPv6 main-table unicast routes
// through a device, leaving out what the kernel makes on its own for every
// link and the runtime never sets: IPv6 link-local and multicast routes and
// routes through loopback. Multipath routes, which the protocol cannot
// express, are left out too.
func (c *Config) ListRoutes(ctx context.Context) (*protocol.Routes, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out, err := c.listRoutes()
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return out, nil
}

// listRoutes is ListRoutes with c.mu held.
func (c *Config) listRoutes() (*protocol.Routes, error) {
	links, err := c.linkNames()
	if err != nil {
		return nil, err
	}
	list, err := nldump.Do(func() ([]netlink.Route, error) { return c.h.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("dump routes: %w", err)
	}
	out := &protocol.Routes{}
	for _, r := range list {
		l, ok := links[r.LinkIndex]
		if !ok || isLoopback(l) || r.Type != unix.RTN_UNICAST || len(r.MultiPath) > 0 {
			continue
		}
		if r.Family != netlink.FAMILY_V4 && r.Family != netlink.FAMILY_V6 {
			continue
		}
		if r.Dst != nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
			continue
		}
		out.Routes = append(out.Routes, toRoute(r, l.Attrs().Name))
	}
	return out, nil
}

func toRoute(r netlink.Route, device string) *protocol.Route {
	p := &protocol.Route{
		Device: device,
		Scope:  uint32(r.Scope),
		Metric: uint32(r.Priority),
		Family: 4,
	}
	if r.Family == netlink.FAMILY_V6 {
		p.Family = 6
	}
	if r.Dst != nil {
		if ones, _ := r.Dst.Mask.Size(); ones > 0 || !r.Dst.IP.IsUnspecified() {
			p.Dest = r.Dst.String()
		}
	}
	if r.Gw != nil {
		p.Gateway = r.Gw.String()
	}
	if r.Src != nil {
		p.Source = r.Src.String()
	}
	return p
}
