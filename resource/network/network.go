// Package network joins a pod's network namespace to its VM. Setup scans
// the namespace the CNI plugin (or CRI) prepared, makes one endpoint per
// interface and connects each to a virtio-net device of the VM through a
// TAP or macvtap in that namespace. It also reads what the guest must look
// like — the interfaces' MACs, MTUs and addresses, the routes and the
// pinned neighbours — as agent protocol values, so the guest can be made a
// copy of the namespace.
//
// Two interworking models are implemented:
//
//   - tcfilter (default): a TAP per interface, and tc ingress qdiscs with a
//     match-all u32 filter and a mirred egress redirect in each direction,
//     so every frame arriving on the pod interface goes to the VM and every
//     frame from the VM leaves through the pod interface. The namespace's
//     own IP stack never sees the pod's traffic.
//   - macvtap: a passthru macvtap on top of the interface; the VM reads
//     and writes its queues (/dev/tapN).
//
// The namespace is left as the CNI plugin made it: its interfaces keep
// their MACs and addresses (the plugin owns them and deletes them), and
// Teardown removes exactly what Setup added.
//
// The pod's addresses then exist twice, in the namespace and in the
// guest, which is harmless. Under tcfilter the ingress filter takes every
// frame arriving on the pod interface before the namespace's IP stack
// sees it, so the namespace never answers ARP or neighbour solicitations
// for the pod's IP: the guest does, with the same MAC (a test proves it).
// What the namespace's kernel sends by itself on the interface (IPv6
// router solicitations, MLD reports) carries that same MAC and those same
// addresses, so the peer learns nothing that contradicts the guest. The
// TAP's own IPv6 is switched off so the host side sends nothing into the
// VM. Under macvtap (passthru) unicast frames go to the VM only, while
// broadcasts and multicasts reach both, so the namespace answers an ARP
// request too (seen on the 6.18 host), with the guest's own MAC: a
// duplicate, never a conflict. Processes inside the namespace itself lose the network: the
// answers to their packets go to the VM.
package network

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/persist/api"
)

// Model is how a pod interface is joined to the VM's NIC.
type Model string

const (
	// ModelTCFilter redirects between the interface and a TAP with tc.
	// The empty Model means the same.
	ModelTCFilter Model = "tcfilter"
	// ModelMacvtap puts a passthru macvtap on the interface.
	ModelMacvtap Model = "macvtap"
)

// maxQueues is the most queues a TAP or macvtap takes (MAX_TAP_QUEUES).
const maxQueues = 256

// Recorder makes an endpoint durable in the sandbox's persisted state
// before its device is created, so that a cleanup after a crash (the shim
// was killed before the next save) still knows what to remove. Recording
// an endpoint whose device then fails to appear is harmless:
// TeardownFromState skips what is not there.
type Recorder func(ctx context.Context, e api.Endpoint) error

// Options say which namespace to join to the VM and how.
type Options struct {
	// NetNS is the path of the pod's network namespace (the OCI spec's
	// network namespace path, /proc/PID/ns/net, /var/run/netns/NAME).
	NetNS string
	// Model is "tcfilter" (or empty) or "macvtap".
	Model Model
	// Queues per NIC: the VM's vCPU count gives one queue pair per vCPU
	// (a multi-queue TAP); 0 means 1.
	Queues int
	// NoVhostNet leaves vhost-net out even where /dev/vhost-net exists,
	// for a VMM that serves the queues itself.
	NoVhostNet bool
	// Record, if set, is called for each endpoint before its device is
	// made.
	Record Recorder
}

func (o *Options) validate() error {
	if o.NetNS == "" {
		return fmt.Errorf("network namespace path is empty: give the pod's netns path from the OCI spec: %w", errdefs.ErrInvalidArgument)
	}
	switch o.Model {
	case "":
		o.Model = ModelTCFilter
	case ModelTCFilter, ModelMacvtap:
	default:
		return fmt.Errorf("model %q is not one of tcfilter, macvtap: %w", o.Model, errdefs.ErrInvalidArgument)
	}
	if o.Queues == 0 {
		o.Queues = 1
	}
	if o.Queues < 1 || o.Queues > maxQueues {
		return fmt.Errorf("queues %d out of range 1..%d (one per vCPU): %w", o.Queues, maxQueues, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Network is a pod namespace joined to a VM: its endpoints and what the
// guest needs to look like the namespace.
type Network struct {
	netnsPath string
	model     Model

	// Endpoints, one per pod interface, in the namespace's index order.
	Endpoints []*Endpoint
	// Routes and Neighbors of the whole namespace through the endpoints'
	// interfaces, for the agent's UpdateRoutes and AddARPNeighbors.
	Routes    []*protocol.Route
	Neighbors []*protocol.Neighbor

	mu sync.Mutex
	// nl is a netlink handle in the namespace, kept for Teardown: by then
	// the path may be gone while the namespace still holds our devices.
	// Guarded by mu; nil once torn down.
	nl *netlink.Handle
}

// Setup joins the pod network namespace opts.NetNS to a VM: it makes an
// endpoint for every interface there except lo and the devices joey made
// (and down interfaces without addresses), with a TAP or macvtap whose
// queue files the VM takes through Endpoint.TakeDevice. It changes nothing
// unless every interface can be carried: one joey cannot carry fails the
// call with an error naming it. A failed Setup removes what it made.
func Setup(ctx context.Context, opts Options) (*Network, error) {
	return defaultHost.setup(ctx, opts)
}

func (hst host) setup(ctx context.Context, opts Options) (_ *Network, retErr error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("network setup: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("network setup: %w", err)
	}
	ns, err := netns.GetFromPath(opts.NetNS)
	if err != nil {
		return nil, fmt.Errorf("network setup: open network namespace %s: %w", opts.NetNS, err)
	}
	defer ns.Close()
	// NETLINK_ROUTE only: the default set adds XFRM and NETFILTER sockets,
	// which fail where xfrm_user is not loaded (and are never used here).
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("network setup: netlink in %s: %w", opts.NetNS, err)
	}
	n := &Network{netnsPath: opts.NetNS, model: opts.Model, nl: h}
	defer func() {
		if retErr != nil {
			if err := n.Teardown(context.WithoutCancel(ctx)); err != nil {
				log.G(ctx).WithError(err).Error("undo failed network setup")
				retErr = errors.Join(retErr, fmt.Errorf("undo: %w", err))
			}
		}
	}()

	pods, err := hst.scanLinks(ctx, h, opts.NetNS, opts.Model)
	if err != nil {
		return nil, fmt.Errorf("network setup in %s: %w", opts.NetNS, err)
	}
	devices := make(map[int]string, len(pods))
	for _, p := range pods {
		devices[p.link.Attrs().Index] = p.link.Attrs().Name
	}
	if n.Routes, err = guestRoutes(ctx, h, devices); err != nil {
		return nil, fmt.Errorf("network setup in %s: %w", opts.NetNS, err)
	}
	if n.Neighbors, err = guestNeighbors(h, devices); err != nil {
		return nil, fmt.Errorf("network setup in %s: %w", opts.NetNS, err)
	}
	for i, p := range pods {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("network setup: %w", err)
		}
		e, err := hst.attach(ctx, n, i, p, opts)
		if e != nil {
			// Even half made: Teardown removes what is there.
			n.Endpoints = append(n.Endpoints, e)
		}
		if err != nil {
			return nil, fmt.Errorf("network setup in %s: interface %q: %w", opts.NetNS, p.link.Attrs().Name, err)
		}
		log.G(ctx).WithField("interface", e.Name()).WithField("kind", e.kind).WithField("device", e.device).
			WithField("model", opts.Model).WithField("queues", e.queues).WithField("vhost_net", e.VhostNet()).
			Debug("network endpoint attached")
	}
	return n, nil
}

// Interfaces returns the guest interfaces of all endpoints, for the agent's
// UpdateInterface.
func (n *Network) Interfaces() []*protocol.Interface {
	out := make([]*protocol.Interface, 0, len(n.Endpoints))
	for _, e := range n.Endpoints {
		out = append(out, e.Interface())
	}
	return out
}

// Describe is the network as it is persisted, for TeardownFromState.
func (n *Network) Describe() api.Network {
	d := api.Network{NetNS: n.netnsPath, Model: string(n.model)}
	for _, e := range n.Endpoints {
		d.Endpoints = append(d.Endpoints, e.Describe())
	}
	return d
}

// Teardown removes what Setup added to the namespace — the TAPs or
// macvtaps and the qdiscs and filters — and closes the queue files not
// taken. Call it once the VM that took the files has stopped: a deleted
// TAP leaves the VM's files dead. It goes on past errors and returns them
// all; a second call does nothing.
func (n *Network) Teardown(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nl == nil {
		return nil
	}
	var errs []error
	for i := len(n.Endpoints) - 1; i >= 0; i-- {
		if err := n.Endpoints[i].teardown(ctx, n.nl); err != nil {
			errs = append(errs, err)
		}
	}
	n.nl.Close()
	n.nl = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network teardown in %s: %w", n.netnsPath, err)
	}
	return nil
}
