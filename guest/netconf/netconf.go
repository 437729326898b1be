// Package netconf configures the guest's network so that, seen from inside the
// VM, it looks like the pod's network namespace on the host: the same interface
// names, MACs, MTUs and addresses, the same routes and the same neighbour
// entries. The guest agent applies what the runtime read from the pod namespace.
//
// Every change goes through one netlink handle, so tests can point a Config at a
// namespace they made while the agent uses its own.
//
// Bad input is reported wrapping errdefs.ErrInvalidArgument and missing links
// wrapping errdefs.ErrNotFound, so the agent's API edge can map them to codes.
package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/joeyrt/joey/internal/nldump"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
)

// Config changes the network of one namespace: the guest's, in the agent.
type Config struct {
	h *netlink.Handle

	// mu serialises the read-modify-write sequences of the exported methods:
	// two concurrent updates of one link would otherwise each remove what the
	// other just added. It also guards rescan and rescanWait.
	mu sync.Mutex

	// rescan makes the kernel look for hot-added NICs; nil means none is
	// looked for. See SetRescan.
	rescan func() error
	// rescanWait is how long UpdateInterface waits for a link after rescan.
	rescanWait time.Duration
}

// Defaults of the wait for a hot-added NIC after a rescan: the kernel probes
// the device during the rescan, but the driver may register its link later.
const (
	defaultRescanWait = 3 * time.Second
	rescanPoll        = 50 * time.Millisecond
)

// New returns a Config working through h. A nil h means the namespace of the
// calling thread at the time of each call (a fresh netlink socket per request),
// which for the agent is the guest's one and only namespace.
func New(h *netlink.Handle) *Config {
	if h == nil {
		h = &netlink.Handle{}
	}
	return &Config{h: h, rescanWait: defaultRescanWait}
}

// SetRescan sets the hook UpdateInterface calls when no guest link has the
// requested MAC: it should make the kernel find NICs added since boot (the
// agent's does a PCI rescan, see RescanPCI), after which UpdateInterface
// waits briefly for the link to appear. A nil hook (the default) means a
// missing link is reported at once.
func (c *Config) SetRescan(rescan func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rescan = rescan
}

// SetupLoopback brings lo up. A VM boots with lo down, and containers expect
// 127.0.0.1 to work as it does in any network namespace.
func (c *Config) SetupLoopback(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("set up loopback: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	lo, err := c.h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("set up loopback: find lo: %w", err)
	}
	if err := c.h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set up loopback: %w", err)
	}
	return nil
}

// linkNames maps link indexes to names, for turning routes and addresses back
// into the protocol's device names.
func (c *Config) linkNames() (map[int]netlink.Link, error) {
	links, err := nldump.Do(c.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	m := make(map[int]netlink.Link, len(links))
	for _, l := range links {
		m[l.Attrs().Index] = l
	}
	return m, nil
}

// deviceIndex returns the index of the guest link called name. A link that
// does not exist is reported as not found: the runtime names a device it has
// not configured yet.
func (c *Config) deviceIndex(name string) (int, error) {
	l, err := c.h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return 0, fmt.Errorf("device %q: no such guest link; configure the interface first: %w", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("device %q: %w", name, err)
	}
	return l.Attrs().Index, nil
}

// isLoopback reports whether l is the loopback device, which the runtime never
// configures and the lists leave out.
func isLoopback(l netlink.Link) bool {
	return l.Attrs().Flags&net.FlagLoopback != 0
}

// family returns 4 or 6 for ip.
func family(ip net.IP) uint32 {
	if ip.To4() != nil {
		return 4
	}
	return 6
}

// netlinkFamily maps the protocol's 4/6 to the netlink family constants.
func netlinkFamily(f uint32) int {
	if f == 4 {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// parseIP parses s and returns it in its shortest form (4 bytes for IPv4), so
// it compares equal to what netlink reads back.
func parseIP(s string) (net.IP, bool) {
	ip := net.ParseIP(s)
	if ip == nil {
		return nil, false
	}
	if v4 := ip.To4(); v4 != nil {
		return v4, true
	}
	return ip, true
}
