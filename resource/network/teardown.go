package network

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/persist/api"
)

// TeardownFromState removes what a Setup in another process added to the
// namespace at netnsPath, knowing only the persisted endpoints: the shim's
// delete after the shim that ran the sandbox was killed. It deletes each
// endpoint's device if it is still there and is a TAP or macvtap of the
// name Setup gives, and the tc filters Setup put on the pod interface,
// with the ingress qdisc when it holds nothing else. A namespace that is
// gone took everything with it. It goes on past errors and returns them
// all.
func TeardownFromState(ctx context.Context, netnsPath string, endpoints []api.Endpoint) error {
	if len(endpoints) == 0 {
		return nil
	}
	if !isNetNS(netnsPath) {
		log.G(ctx).WithField("netns", netnsPath).Debug("network namespace gone; nothing to tear down")
		return nil
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return fmt.Errorf("network teardown: open network namespace %s: %w", netnsPath, err)
	}
	defer ns.Close()
	// NETLINK_ROUTE only: the default set adds XFRM and NETFILTER sockets,
	// which fail where xfrm_user is not loaded (and are never used here).
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("network teardown: netlink in %s: %w", netnsPath, err)
	}
	defer h.Close()
	var errs []error
	for i := len(endpoints) - 1; i >= 0; i-- {
		ep := endpoints[i]
		if err := removeOurFilters(h, ep.Interface); err != nil {
			errs = append(errs, fmt.Errorf("interface %q: %w", ep.Interface, err))
		}
		if ep.Tap == "" {
			continue // an adopted TAP: not ours to delete
		}
		if err := deleteOwnDevice(h, ep.Tap); err != nil {
			errs = append(errs, fmt.Errorf("interface %q: %w", ep.Interface, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network teardown in %s: %w", netnsPath, err)
	}
	return nil
}

// isNetNS reports whether path still is a network namespace; a bind mount
// that was unmounted leaves an ordinary empty file behind.
func isNetNS(path string) bool {
	if path == "" {
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// removeOurFilters deletes the redirect filters Setup added to the ingress
// qdisc of the link name, and the qdisc itself when no other filter is on
// it. Setup refuses an interface that already has an ingress qdisc, so one
// carrying our filters is ours.
func removeOurFilters(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("look up link: %w", err)
	}
	filters, err := h.FilterList(link, netlink.HANDLE_INGRESS)
	if err != nil {
		if gone(err) || errors.Is(err, unix.EINVAL) {
			return nil // no ingress qdisc
		}
		return fmt.Errorf("list ingress filters: %w", err)
	}
	var ours, foreign int
	for _, f := range filters {
		if isOurFilter(f) {
			ours++
		} else {
			foreign++
		}
	}
	switch {
	case ours == 0:
		return nil
	case foreign == 0:
		if err := deleteIngress(h, link.Attrs().Index); err != nil {
			return fmt.Errorf("delete ingress qdisc: %w", err)
		}
		return nil
	}
	for _, f := range filters {
		if !isOurFilter(f) {
			continue
		}
		if err := h.FilterDel(f); err != nil && !gone(err) {
			return fmt.Errorf("delete filter: %w", err)
		}
	}
	return nil
}

// deleteOwnDevice deletes the TAP or macvtap name if it is there. The name
// comes from a state file, so anything but a device of the kind and name
// Setup makes is left alone.
func deleteOwnDevice(h *netlink.Handle, name string) error {
	if !ownName.MatchString(name) {
		return fmt.Errorf("device %q is not a name joey gives its devices; left in place", name)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("look up %q: %w", name, err)
	}
	switch l := link.(type) {
	case *netlink.Macvtap:
	case *netlink.Tuntap:
		if l.Mode != netlink.TUNTAP_MODE_TAP {
			return fmt.Errorf("%q is a TUN device, not a TAP joey made; left in place", name)
		}
	default:
		return fmt.Errorf("%q is a %s link, not a device joey made; left in place", name, link.Type())
	}
	if err := h.LinkDel(link); err != nil && !gone(err) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %q: %w", name, err)
	}
	return nil
}
