package network

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/tap"
)

// filterPriority marks the u32 filters Setup adds, so TeardownFromState
// can tell them from anybody else's ("JO").
const filterPriority = 0x4a4f

// attachTCFilter joins pod to the VM through a new TAP named name: tc
// redirects every frame that arrives on either link out of the other. The
// TAP gets a MAC of its own: the guest's NIC carries the pod interface's
// MAC, and the host-side TAP is never the source or destination of the
// pod's frames.
func attachTCFilter(ctx context.Context, h *netlink.Handle, e *Endpoint, name string, pod netlink.Link, opts Options) error {
	// Refuse before recording: TeardownFromState must be able to take an
	// ingress qdisc carrying our filters for ours.
	if err := ingressFree(h, pod); err != nil {
		return err
	}
	e.device = name
	if err := e.record(ctx, opts); err != nil {
		return err
	}
	mac, err := localMAC()
	if err != nil {
		return err
	}
	t, err := tap.Create(ctx, tap.Options{
		Name:    name,
		Queues:  e.queues,
		MTU:     pod.Attrs().MTU,
		MAC:     mac,
		VnetHdr: true,
		NetNS:   opts.NetNS,
	})
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%w (a TAP of an earlier sandbox in this namespace was not cleaned up: run the shim's delete for it)", err)
		}
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tap = t
	if err := inNetNS(opts.NetNS, func() error { return disableIPv6(name) }); err != nil {
		return err
	}
	if err := h.QdiscAdd(ingressQdisc(pod.Attrs().Index)); err != nil {
		return fmt.Errorf("add ingress qdisc to %q: %w", pod.Attrs().Name, err)
	}
	e.qdisc = true
	if err := h.FilterAdd(redirect(pod.Attrs().Index, t.Index())); err != nil {
		return fmt.Errorf("redirect %q to %q: %w", pod.Attrs().Name, name, err)
	}
	// The TAP's own qdisc and filter go when the TAP is deleted.
	if err := h.QdiscAdd(ingressQdisc(t.Index())); err != nil {
		return fmt.Errorf("add ingress qdisc to %q: %w", name, err)
	}
	if err := h.FilterAdd(redirect(t.Index(), pod.Attrs().Index)); err != nil {
		return fmt.Errorf("redirect %q to %q: %w", name, pod.Attrs().Name, err)
	}
	return nil
}

// ingressFree fails if link already has an ingress (or clsact) qdisc,
// which would be somebody else's.
func ingressFree(h *netlink.Handle, link netlink.Link) error {
	qs, err := h.QdiscList(link)
	if err != nil {
		return fmt.Errorf("list qdiscs of %q: %w", link.Attrs().Name, err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_INGRESS {
			return fmt.Errorf("%q already has a qdisc at its ingress (%s), which the tcfilter model needs for itself: remove it (tc qdisc del dev %s %s) or use the macvtap model",
				link.Attrs().Name, q.Type(), link.Attrs().Name, q.Type())
		}
	}
	return nil
}

// deleteIngress deletes the ingress qdisc of the link index, with its
// filters, if the link and the qdisc are still there.
func deleteIngress(h *netlink.Handle, index int) error {
	qs, err := h.QdiscList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}})
	if err != nil {
		if gone(err) {
			return nil
		}
		return fmt.Errorf("list qdiscs: %w", err)
	}
	for _, q := range qs {
		if q.Type() != "ingress" {
			continue
		}
		if err := h.QdiscDel(q); err != nil && !gone(err) {
			return err
		}
	}
	return nil
}

func ingressQdisc(index int) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_INGRESS,
	}}
}

// redirect is `tc filter add dev FROM parent ffff: protocol all u32 match
// u8 0 0 action mirred egress redirect dev TO`: a u32 filter without a
// selector matches every frame.
func redirect(from, to int) *netlink.U32 {
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from,
			Parent:    netlink.HANDLE_INGRESS,
			Priority:  filterPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{netlink.NewMirredAction(to)},
	}
}

// isOurFilter reports whether f is a redirect Setup added.
func isOurFilter(f netlink.Filter) bool {
	u, ok := f.(*netlink.U32)
	if !ok || u.Priority != filterPriority {
		return false
	}
	for _, a := range u.Actions {
		if m, ok := a.(*netlink.MirredAction); ok && m.MirredAction == netlink.TCA_EGRESS_REDIR {
			return true
		}
	}
	return false
}

// localMAC returns a random locally administered unicast MAC.
func localMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, fmt.Errorf("random MAC: %w", err)
	}
	mac[0] = mac[0]&^1 | 2
	return mac, nil
}

// disableIPv6 turns IPv6 off on the host side of a device made for the VM,
// so the namespace's kernel sends no router solicitations, DAD probes or
// MLD reports of its own into the VM. Must run inside the namespace:
// /proc/sys/net shows the namespace of the thread that opens it. A kernel
// without IPv6 has nothing to turn off.
func disableIPv6(dev string) error {
	p := filepath.Join("/proc/sys/net/ipv6/conf", dev, "disable_ipv6")
	if _, err := os.Stat(filepath.Dir(p)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("disable IPv6 on %q: %w", dev, err)
	}
	return nil
}
