package network

import (
	"context"
	"fmt"
	"net"
	"sort"

	"github.com/joeyrt/joey/internal/nldump"

	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
)

// podLink is one interface found in the pod's namespace.
type podLink struct {
	link  netlink.Link
	addrs []netlink.Addr // global ones only
	kind  Kind
}

// scanLinks lists the pod interfaces of the namespace h is in, in index
// order, and classifies each; an interface that cannot reach the VM fails
// the scan, before anything is changed.
func (hst host) scanLinks(ctx context.Context, h *netlink.Handle, netnsPath string, model Model) ([]podLink, error) {
	links, err := nldump.Do(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Index < links[j].Attrs().Index })
	var out []podLink
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || ownName.MatchString(a.Name) {
			continue
		}
		addrs, err := globalAddrs(h, l)
		if err != nil {
			return nil, err
		}
		// Every new namespace gets down, unaddressed fallback devices of
		// the tunnel drivers the host kernel has (tunl0, sit0, gre0…);
		// they are nobody's pod interface.
		if a.Flags&net.FlagUp == 0 && len(addrs) == 0 {
			log.G(ctx).WithField("interface", a.Name).WithField("type", l.Type()).Debug("skip down interface without addresses")
			continue
		}
		kind, err := hst.classify(netnsPath, l, addrs, model)
		if err != nil {
			return nil, err
		}
		out = append(out, podLink{link: l, addrs: addrs, kind: kind})
	}
	return out, nil
}

// globalAddrs returns the universe-scope addresses of l. Link-local ones
// stay behind: the guest's kernel makes its own from the same MAC.
func globalAddrs(h *netlink.Handle, l netlink.Link) ([]netlink.Addr, error) {
	all, err := nldump.Do(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of %q: %w", l.Attrs().Name, err)
	}
	var out []netlink.Addr
	for _, a := range all {
		if a.Scope == unix.RT_SCOPE_UNIVERSE {
			out = append(out, a)
		}
	}
	return out, nil
}

// guestInterface is what the guest makes of p: the same name, MAC, MTU
// and addresses.
func guestInterface(p podLink) *protocol.Interface {
	a := p.link.Attrs()
	in := &protocol.Interface{
		Name:   a.Name,
		HwAddr: a.HardwareAddr.String(),
		Mtu:    uint32(a.MTU),
		Up:     a.Flags&net.FlagUp != 0,
	}
	for _, ad := range p.addrs {
		ones, _ := ad.Mask.Size()
		in.Addresses = append(in.Addresses, &protocol.IPAddress{Address: ad.IP.String(), PrefixLen: uint32(ones)})
	}
	return in
}

// guestRoutes returns the main-table unicast routes through the pod
// interfaces in links (by index), the way the guest's ListRoutes reports
// them, so the two can be compared: IPv6 link-local and multicast routes,
// which every kernel makes itself, are left out.
func guestRoutes(ctx context.Context, h *netlink.Handle, links map[int]string) ([]*protocol.Route, error) {
	list, err := nldump.Do(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []*protocol.Route
	for _, r := range list {
		if len(r.MultiPath) > 0 {
			if throughAny(r.MultiPath, links) {
				log.G(ctx).WithField("route", r.String()).Warn("multipath route not given to the guest: the agent protocol has no multipath routes")
			}
			continue
		}
		dev, ok := links[r.LinkIndex]
		if !ok || r.Type != unix.RTN_UNICAST {
			continue
		}
		if r.Family != netlink.FAMILY_V4 && r.Family != netlink.FAMILY_V6 {
			continue
		}
		if r.Dst != nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
			continue
		}
		p := &protocol.Route{Device: dev, Scope: uint32(r.Scope), Metric: uint32(r.Priority), Family: 4}
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
		out = append(out, p)
	}
	return out, nil
}

func throughAny(hops []*netlink.NexthopInfo, links map[int]string) bool {
	for _, h := range hops {
		if _, ok := links[h.LinkIndex]; ok {
			return true
		}
	}
	return false
}

// guestNeighbors returns the permanent ARP and NDP entries on the pod
// interfaces in links: what an administrator or a CNI plugin pinned. The
// entries the kernel learned are the guest's to learn again.
func guestNeighbors(h *netlink.Handle, links map[int]string) ([]*protocol.Neighbor, error) {
	list, err := nldump.Do(func() ([]netlink.Neigh, error) { return h.NeighList(0, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list neighbours: %w", err)
	}
	var out []*protocol.Neighbor
	for _, n := range list {
		dev, ok := links[n.LinkIndex]
		if !ok || n.State&netlink.NUD_PERMANENT == 0 || n.IP == nil || len(n.HardwareAddr) == 0 {
			continue
		}
		out = append(out, &protocol.Neighbor{
			Ip:     n.IP.String(),
			HwAddr: n.HardwareAddr.String(),
			Device: dev,
			State:  netlink.NUD_PERMANENT,
		})
	}
	return out, nil
}
