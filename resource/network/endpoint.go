package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"sync"

	"github.com/containerd/log"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/internal/tap"
	"github.com/joeyrt/joey/persist/api"
	"google.golang.org/protobuf/proto"
)

// Endpoint is one pod interface joined to the VM.
type Endpoint struct {
	kind     Kind
	iface    *protocol.Interface
	podIndex int
	deviceID string
	queues   int
	// device is the TAP or macvtap Setup made; "" for an adopted TAP.
	device string

	mu sync.Mutex
	// The fields below are guarded by mu.
	tap         *tap.Tap   // the tcfilter TAP, or the adopted one
	macvtap     int        // index of the macvtap made, 0 if none
	files       []*os.File // macvtap queue files until taken
	vhost       []*os.File // vhost-net files until taken
	usesVhost   bool       // vhost-net files were opened
	qdisc       bool       // the pod interface's ingress qdisc is ours
	restoreDown bool       // an adopted TAP was down before we opened it
	taken       bool
	torn        bool
}

// Name is the pod interface's name, which the guest link gets too.
func (e *Endpoint) Name() string { return e.iface.Name }

// Kind is what the pod interface is.
func (e *Endpoint) Kind() Kind { return e.kind }

// Device is the TAP or macvtap Setup made for the endpoint in the pod's
// namespace, or "" when the pod interface is itself a TAP.
func (e *Endpoint) Device() string { return e.device }

// Queues is the number of queue pairs of the NIC.
func (e *Endpoint) Queues() int { return e.queues }

// VhostNet reports whether the device comes with vhost-net files, so the
// host kernel moves the frames rather than the VMM.
func (e *Endpoint) VhostNet() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.usesVhost
}

// Interface is the guest interface, for the agent's UpdateInterface: the
// pod interface's name, MAC, MTU and global addresses. It is a copy.
func (e *Endpoint) Interface() *protocol.Interface {
	return proto.Clone(e.iface).(*protocol.Interface)
}

// Describe is the endpoint as persisted.
func (e *Endpoint) Describe() api.Endpoint {
	return api.Endpoint{Interface: e.iface.Name, Tap: e.device}
}

// TakeDevice hands the NIC to the VM: the queue files (and vhost-net
// files) pass to the returned device, whose new owner closes them. The
// link itself stays the endpoint's: Teardown deletes it. Only the first
// call succeeds.
func (e *Endpoint) TakeDevice() (hypervisor.NetDevice, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.taken || e.torn {
		return hypervisor.NetDevice{}, fmt.Errorf("interface %q: the device was already taken or torn down", e.iface.Name)
	}
	var files []*os.File
	if e.tap != nil {
		files = e.tap.TakeFiles()
	} else {
		files, e.files = e.files, nil
	}
	vhost := e.vhost
	e.vhost = nil
	e.taken = true
	mac, err := net.ParseMAC(e.iface.HwAddr)
	if err != nil {
		return hypervisor.NetDevice{}, fmt.Errorf("interface %q: MAC %q: %w", e.iface.Name, e.iface.HwAddr, err)
	}
	return hypervisor.NetDevice{ID: e.deviceID, TapFiles: files, VhostFiles: vhost, MAC: mac, MTU: int(e.iface.Mtu)}, nil
}

// TakeDevices is TakeDevice for every endpoint, in order.
func (n *Network) TakeDevices() ([]hypervisor.NetDevice, error) {
	var out []hypervisor.NetDevice
	for _, e := range n.Endpoints {
		d, err := e.TakeDevice()
		if err != nil {
			for _, t := range out {
				t.Close() // ours to close: nobody else got them
			}
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// deviceIDPattern is what hypervisor.NetDevice accepts as an ID.
var deviceIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,19}$`)

// attach makes the i-th endpoint for p. It returns the endpoint even when
// it fails part way, so the caller's Teardown removes what was made.
func (hst host) attach(ctx context.Context, n *Network, i int, p podLink, opts Options) (*Endpoint, error) {
	e := &Endpoint{
		kind:     p.kind,
		iface:    guestInterface(p),
		podIndex: p.link.Attrs().Index,
		deviceID: p.link.Attrs().Name,
		queues:   opts.Queues,
	}
	if !deviceIDPattern.MatchString(e.deviceID) {
		e.deviceID = fmt.Sprintf("net%d", i)
	}
	var err error
	switch {
	case p.kind == KindTap:
		err = e.adoptTap(ctx, p.link.(*netlink.Tuntap), opts)
	case opts.Model == ModelMacvtap:
		err = hst.attachMacvtap(ctx, n.nl, e, macvtapName(i), p.link, opts)
	default:
		err = attachTCFilter(ctx, n.nl, e, tapName(i), p.link, opts)
	}
	if err != nil {
		return e, err
	}
	if opts.NoVhostNet {
		return e, nil
	}
	vhost, err := openVhostNet(hst.vhostNet, e.queues)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.vhost, e.usesVhost = vhost, len(vhost) > 0
	return e, err
}

// record calls opts.Record, if set, with what Describe will say.
func (e *Endpoint) record(ctx context.Context, opts Options) error {
	if opts.Record == nil {
		return nil
	}
	if err := opts.Record(ctx, e.Describe()); err != nil {
		return fmt.Errorf("record endpoint: %w", err)
	}
	return nil
}

// adoptTap attaches a TAP found in the namespace. Its queue mode is fixed:
// a single-queue TAP takes one queue file whatever opts.Queues says, and a
// multi-queue one at least two.
func (e *Endpoint) adoptTap(ctx context.Context, tt *netlink.Tuntap, opts Options) error {
	if err := e.record(ctx, opts); err != nil {
		return err
	}
	switch multi := tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0; {
	case !multi:
		e.queues = 1
	case e.queues < 2:
		e.queues = 2
	}
	if e.queues != opts.Queues {
		log.G(ctx).WithField("interface", tt.Name).WithField("queues", e.queues).Info("queue count set by the existing TAP")
	}
	t, err := tap.Open(ctx, tap.Options{Name: tt.Name, Queues: e.queues, VnetHdr: true, NetNS: opts.NetNS})
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tap = t
	// tap.Open sets the link up; Teardown puts back a down one.
	e.restoreDown = tt.Attrs().Flags&net.FlagUp == 0
	return nil
}

// teardown removes what attach made, in the reverse order.
func (e *Endpoint) teardown(ctx context.Context, h *netlink.Handle) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.torn {
		return nil
	}
	e.torn = true
	var errs []error
	if e.qdisc {
		if err := deleteIngress(h, e.podIndex); err != nil {
			errs = append(errs, fmt.Errorf("delete ingress qdisc of %q: %w", e.iface.Name, err))
		}
		e.qdisc = false
	}
	if e.restoreDown && e.tap != nil {
		if err := h.LinkSetDown(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Index: e.tap.Index()}}); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("set %q down again: %w", e.iface.Name, err))
		}
	}
	if e.tap != nil {
		errs = append(errs, e.tap.Close())
	}
	errs = append(errs, closeAll(e.files), closeAll(e.vhost))
	e.files, e.vhost = nil, nil
	if e.macvtap != 0 {
		if err := deleteLink(h, e.macvtap, e.device); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("interface %q: %w", e.iface.Name, err)
	}
	log.G(ctx).WithField("interface", e.iface.Name).WithField("device", e.device).Debug("network endpoint torn down")
	return nil
}

// deleteLink deletes the link with index and name; one that is gone (or
// whose index now names another link) is left alone.
func deleteLink(h *netlink.Handle, index int, name string) error {
	l, err := h.LinkByIndex(index)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || gone(err) {
			return nil
		}
		return fmt.Errorf("look up %q: %w", name, err)
	}
	if l.Attrs().Name != name {
		return nil
	}
	if err := h.LinkDel(l); err != nil && !gone(err) {
		return fmt.Errorf("delete %q: %w", name, err)
	}
	return nil
}

// gone reports whether err says the object to remove is not there.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

func closeAll(files []*os.File) error {
	var errs []error
	for _, f := range files {
		if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
