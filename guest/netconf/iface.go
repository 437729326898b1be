package netconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/joeyrt/joey/internal/nldump"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
)

// UpdateInterface configures the guest link whose MAC is in.HwAddr: the VM's
// NIC carries the pod interface's MAC, while its name is whatever the guest
// kernel chose. It renames the link to in.Name (when set), sets in.Mtu (when
// not 0), makes its global addresses exactly in.Addresses and sets it up or
// down. Link-local addresses stay: the kernel owns them and IPv6 neighbour
// discovery needs them. It returns the interface as read back.
//
// When no link has the MAC and a rescan hook is set (SetRescan), the NIC may
// have been hot-added since boot: UpdateInterface runs the hook once and waits
// a few seconds for the link to appear. A link that does not appear, or a
// failed hook, leaves the not-found error, with the hook's error in its text.
//
// Renaming and going down drop the link's routes; call UpdateRoutes after.
func (c *Config) UpdateInterface(ctx context.Context, in *protocol.Interface) (*protocol.Interface, error) {
	if in == nil {
		return nil, fmt.Errorf("update interface: interface is missing: %w", errdefs.ErrInvalidArgument)
	}
	mac, addrs, err := parseInterface(in)
	if err != nil {
		return nil, fmt.Errorf("update interface %s: %w", in.HwAddr, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("update interface %s: %w", in.HwAddr, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()

	link, err := c.linkByMAC(mac)
	if errors.Is(err, errdefs.ErrNotFound) && c.rescan != nil {
		// Rescanning and waiting only read the guest's links, so they run
		// without c.mu: other calls need not wait seconds for a NIC that may
		// never come. The link is looked up again under c.mu before anything
		// changes.
		rescan, wait := c.rescan, c.rescanWait
		func() {
			c.mu.Unlock()
			defer c.mu.Lock() // even if the hook panics, for the deferred Unlock
			err = c.rescanForLink(ctx, mac, err, rescan, wait)
		}()
		if err == nil {
			link, err = c.linkByMAC(mac)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("update interface: %w", err)
	}
	if err := c.configureLink(ctx, link, in, addrs); err != nil {
		return nil, fmt.Errorf("update interface %s (%s): %w", link.Attrs().Name, mac, err)
	}
	out, err := c.readInterface(link.Attrs().Index)
	if err != nil {
		return nil, fmt.Errorf("update interface %s: read back: %w", mac, err)
	}
	return out, nil
}

// rescanForLink runs rescan once and polls until a link has mac, returning nil
// then. notFound is linkByMAC's error from before the rescan; it is returned,
// with the hook's error in its text, when rescan fails, and the latest
// lookup's error (listing the guest's links as they are now) when the wait
// ends without the link. The caller must not hold c.mu.
func (c *Config) rescanForLink(ctx context.Context, mac net.HardwareAddr, notFound error, rescan func() error, wait time.Duration) error {
	logger := log.G(ctx).WithField("hw_addr", mac.String())
	logger.Debug("no guest link has this MAC; rescanning for a hot-added NIC")
	if err := rescan(); err != nil {
		// Waiting would find nothing: the rescan that would add the link
		// failed. The runtime retries, and its next call rescans again.
		logger.WithError(err).Warn("rescan for a hot-added NIC failed")
		return fmt.Errorf("rescanning for hot-added NICs failed (%v): %w", err, notFound)
	}
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(rescanPoll)
	defer tick.Stop()
	for {
		_, err := c.linkByMAC(mac)
		if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("waited %s after a rescan for hot-added NICs: %w", wait, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hw_addr %s: waiting for the link after a rescan: %w", mac, ctx.Err())
		case <-tick.C:
		}
	}
}

// configureLink applies in to link in the order the kernel needs: a link must
// be down to be renamed, and taking a link down flushes its IPv6 addresses, so
// it goes down before the addresses are set and up only at the end.
func (c *Config) configureLink(ctx context.Context, link netlink.Link, in *protocol.Interface, addrs []*net.IPNet) error {
	attrs := link.Attrs()
	up := attrs.Flags&net.FlagUp != 0
	rename := in.Name != "" && in.Name != attrs.Name
	if up && (rename || !in.Up) {
		if err := c.h.LinkSetDown(link); err != nil {
			return fmt.Errorf("set down: %w", err)
		}
	}
	if rename {
		if err := c.h.LinkSetName(link, in.Name); err != nil {
			return fmt.Errorf("rename to %q: %w", in.Name, err)
		}
		log.G(ctx).WithField("from", attrs.Name).WithField("to", in.Name).Debug("renamed guest link")
	}
	if in.Mtu != 0 && int(in.Mtu) != attrs.MTU {
		if err := c.h.LinkSetMTU(link, int(in.Mtu)); err != nil {
			return fmt.Errorf("set mtu %d: %w", in.Mtu, err)
		}
	}
	if err := c.replaceAddrs(ctx, link, addrs); err != nil {
		return err
	}
	if in.Up {
		if err := c.h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
	}
	return nil
}

// replaceAddrs makes link's global addresses exactly want. Unwanted ones go
// first; then every wanted one is (re)added, because deleting an IPv4 primary
// address also deletes its secondaries, which may be wanted.
func (c *Config) replaceAddrs(ctx context.Context, link netlink.Link, want []*net.IPNet) error {
	have, err := nldump.Do(func() ([]netlink.Addr, error) { return c.h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range have {
		if a.Scope != unix.RT_SCOPE_UNIVERSE || containsNet(want, a.IPNet) {
			continue
		}
		if err := c.h.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove address %s: %w", a.IPNet, err)
		}
		log.G(ctx).WithField("address", a.IPNet.String()).Debug("removed guest address")
	}
	for _, n := range want {
		a := &netlink.Addr{IPNet: n}
		if n.IP.To4() == nil {
			// Without nodad the address stays tentative for a second or more
			// and cannot be bound; the pod's address is known to be unique.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := c.h.AddrReplace(link, a); err != nil {
			return fmt.Errorf("add address %s: %w", n, err)
		}
	}
	return nil
}

func containsNet(list []*net.IPNet, n *net.IPNet) bool {
	for _, m := range list {
		if m.IP.Equal(n.IP) && bytes.Equal(m.Mask, n.Mask) {
			return true
		}
	}
	return false
}

// linkByMAC finds the one link with mac. The error lists the guest's MACs,
// because a miss usually means the VM's NIC was given another MAC than the
// pod's interface.
func (c *Config) linkByMAC(mac net.HardwareAddr) (netlink.Link, error) {
	links, err := nldump.Do(c.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var (
		found netlink.Link
		seen  []string
	)
	for _, l := range links {
		a := l.Attrs()
		if isLoopback(l) {
			continue
		}
		seen = append(seen, fmt.Sprintf("%s=%s", a.Name, a.HardwareAddr))
		if !bytes.Equal(a.HardwareAddr, mac) {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("hw_addr %s: links %s and %s both have it; give the VM's NIC a MAC of its own: %w",
				mac, found.Attrs().Name, a.Name, errdefs.ErrInvalidArgument)
		}
		found = l
	}
	if found == nil {
		return nil, fmt.Errorf("hw_addr %s: no guest link has this MAC (guest links: %s); the VM's NIC must carry the pod interface's MAC: %w",
			mac, strings.Join(seen, ", "), errdefs.ErrNotFound)
	}
	return found, nil
}

// parseInterface checks every field of in before anything changes, so bad
// input leaves the guest as it was.
func parseInterface(in *protocol.Interface) (net.HardwareAddr, []*net.IPNet, error) {
	if in.HwAddr == "" {
		return nil, nil, fmt.Errorf("hw_addr is empty: set the MAC of the pod interface: %w", errdefs.ErrInvalidArgument)
	}
	mac, err := net.ParseMAC(in.HwAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("hw_addr %q is not a MAC address (like 02:42:ac:11:00:02): %w", in.HwAddr, errdefs.ErrInvalidArgument)
	}
	if in.Name != "" {
		if err := checkLinkName(in.Name); err != nil {
			return nil, nil, err
		}
	}
	addrs := make([]*net.IPNet, 0, len(in.Addresses))
	for i, a := range in.Addresses {
		n, err := parseAddress(a)
		if err != nil {
			return nil, nil, fmt.Errorf("addresses[%d]: %w", i, err)
		}
		addrs = append(addrs, n)
	}
	return mac, addrs, nil
}

func parseAddress(a *protocol.IPAddress) (*net.IPNet, error) {
	if a == nil {
		return nil, fmt.Errorf("address is missing: %w", errdefs.ErrInvalidArgument)
	}
	ip, ok := parseIP(a.Address)
	if !ok {
		return nil, fmt.Errorf("address %q is not an IP address (give it without prefix, like 10.4.0.7 or fd00::7): %w",
			a.Address, errdefs.ErrInvalidArgument)
	}
	bits := 8 * len(ip)
	if a.PrefixLen > uint32(bits) {
		return nil, fmt.Errorf("prefix_len %d of %s is out of range: IPv%d allows 0-%d: %w",
			a.PrefixLen, a.Address, family(ip), bits, errdefs.ErrInvalidArgument)
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(int(a.PrefixLen), bits)}, nil
}

// checkLinkName applies the kernel's rules for interface names, so a bad name
// is reported as such rather than as a bare EINVAL after the link went down.
func checkLinkName(name string) error {
	if len(name) >= unix.IFNAMSIZ || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n") {
		return fmt.Errorf("name %q is not a valid link name: use at most %d bytes, no '/', ':' or spaces: %w",
			name, unix.IFNAMSIZ-1, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ListInterfaces returns every link but loopback with its global addresses,
// MTU, MAC and whether it is up.
func (c *Config) ListInterfaces(ctx context.Context) (*protocol.Interfaces, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	links, err := nldump.Do(c.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: list links: %w", err)
	}
	addrs, err := c.globalAddrs(nil)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := &protocol.Interfaces{}
	for _, l := range links {
		if isLoopback(l) {
			continue
		}
		out.Interfaces = append(out.Interfaces, toInterface(l, addrs[l.Attrs().Index]))
	}
	return out, nil
}

// readInterface reads back one link by index.
func (c *Config) readInterface(index int) (*protocol.Interface, error) {
	l, err := c.h.LinkByIndex(index)
	if err != nil {
		return nil, fmt.Errorf("find link %d: %w", index, err)
	}
	addrs, err := c.globalAddrs(l)
	if err != nil {
		return nil, err
	}
	return toInterface(l, addrs[index]), nil
}

// globalAddrs returns the global-scope addresses of link (of every link when
// nil) by link index. Link-local and host addresses are the kernel's own and
// would not mean the same on the other side.
func (c *Config) globalAddrs(link netlink.Link) (map[int][]*protocol.IPAddress, error) {
	list, err := nldump.Do(func() ([]netlink.Addr, error) { return c.h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	m := make(map[int][]*protocol.IPAddress)
	for _, a := range list {
		if a.Scope != unix.RT_SCOPE_UNIVERSE {
			continue
		}
		ones, _ := a.Mask.Size()
		m[a.LinkIndex] = append(m[a.LinkIndex], &protocol.IPAddress{Address: a.IP.String(), PrefixLen: uint32(ones)})
	}
	return m, nil
}

func toInterface(l netlink.Link, addrs []*protocol.IPAddress) *protocol.Interface {
	a := l.Attrs()
	return &protocol.Interface{
		Name:      a.Name,
		HwAddr:    a.HardwareAddr.String(),
		Mtu:       uint32(a.MTU),
		Addresses: addrs,
		Up:        a.Flags&net.FlagUp != 0,
	}
}
