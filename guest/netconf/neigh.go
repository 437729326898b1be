package netconf

import (
	"context"
	"fmt"
	"net"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"

	"github.com/joeyrt/joey/agent/protocol"
)

// AddNeighbors adds or replaces ARP (IPv4) and NDP (IPv6) entries, so the
// guest knows the pod's static neighbours (a CNI's gateway MAC, say) without
// resolving them. State 0 means permanent; any other value is the kernel's
// NUD_* flags as given. Every entry is checked before any is added.
func (c *Config) AddNeighbors(ctx context.Context, ns []*protocol.Neighbor) error {
	type entry struct {
		index  int
		device string
		n      netlink.Neigh
	}
	entries := make([]entry, 0, len(ns))
	for i, p := range ns {
		n, err := parseNeighbor(p)
		if err != nil {
			return fmt.Errorf("add neighbors: neighbors[%d]: %w", i, err)
		}
		entries = append(entries, entry{index: i, device: p.Device, n: n})
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add neighbors: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range entries {
		e := &entries[i]
		index, err := c.deviceIndex(e.device)
		if err != nil {
			return fmt.Errorf("add neighbors: neighbors[%d]: %w", e.index, err)
		}
		e.n.LinkIndex = index
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("add neighbors: %w", err)
		}
		if err := c.h.NeighSet(&e.n); err != nil {
			return fmt.Errorf("add neighbors: neighbors[%d]: %s lladdr %s dev %s: %w",
				e.index, e.n.IP, e.n.HardwareAddr, e.device, err)
		}
	}
	return nil
}

func parseNeighbor(p *protocol.Neighbor) (netlink.Neigh, error) {
	var n netlink.Neigh
	if p == nil {
		return n, fmt.Errorf("neighbor is missing: %w", errdefs.ErrInvalidArgument)
	}
	ip, ok := parseIP(p.Ip)
	if !ok {
		return n, fmt.Errorf("ip %q is not an IP address: %w", p.Ip, errdefs.ErrInvalidArgument)
	}
	mac, err := net.ParseMAC(p.HwAddr)
	if err != nil {
		return n, fmt.Errorf("hw_addr %q of %s is not a MAC address (like 02:42:ac:11:00:02): %w",
			p.HwAddr, p.Ip, errdefs.ErrInvalidArgument)
	}
	if p.Device == "" {
		return n, fmt.Errorf("device of %s is empty: name the guest link the neighbour is on: %w", p.Ip, errdefs.ErrInvalidArgument)
	}
	// ndm_state is 16 bits wide.
	if p.State > 0xffff {
		return n, fmt.Errorf("state %#x of %s is not a NUD_* value: %w", p.State, p.Ip, errdefs.ErrInvalidArgument)
	}
	n.State = int(p.State)
	if n.State == 0 {
		n.State = netlink.NUD_PERMANENT
	}
	n.Family = netlinkFamily(family(ip))
	n.IP = ip
	n.HardwareAddr = mac
	return n, nil
}
