package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/hypervisor/qemu/qmp"
)

// hotplugVM is a q35 VM started with empty PCIe root ports. Only such a VM
// implements hypervisor.Hotplugger: a microvm has no hotplug at all, so its
// VM does not claim the ability.
type hotplugVM struct {
	*vm

	mu      sync.Mutex
	free    []string           // guarded by mu; root ports with nothing plugged
	plugged map[string]plugged // guarded by mu; by device ID
}

// plugged is what AddDevice created for one device.
type plugged struct {
	slot   string
	device string // QEMU device id
	node   string // block node, for a disk
	netdev string // netdev id, for a NIC
	busy   bool   // being added or removed: RemoveDevice must not start
}

var _ hypervisor.Hotplugger = (*hotplugVM)(nil)

func newHotplugVM(v *vm, slots int) *hotplugVM {
	h := &hotplugVM{vm: v, plugged: map[string]plugged{}}
	for i := range slots {
		h.free = append(h.free, fmt.Sprintf(rootPortFmt, i))
	}
	return h
}

// AddDevice implements hypervisor.Hotplugger.
func (h *hotplugVM) AddDevice(ctx context.Context, dev hypervisor.Device) error {
	switch d := dev.(type) {
	case hypervisor.BlockDevice:
		if err := d.Validate(); err != nil {
			return fmt.Errorf("add device: %w", err)
		}
		return h.add(ctx, d.ID, func(slot string, p *plugged) error { return h.addBlock(ctx, slot, d, p) })
	case hypervisor.NetDevice:
		// The files are ours from now on; QEMU keeps its own copies.
		defer d.Close()
		if err := d.Validate(); err != nil {
			return fmt.Errorf("add device: %w", err)
		}
		return h.add(ctx, d.ID, func(slot string, p *plugged) error { return h.addNet(ctx, slot, d, p) })
	}
	return fmt.Errorf("add device: %T cannot be hot-added by qemu", dev)
}

// add reserves a slot for id, runs plug, and keeps the slot only if plug
// succeeded.
func (h *hotplugVM) add(ctx context.Context, id string, plug func(slot string, p *plugged) error) error {
	h.mu.Lock()
	if _, ok := h.plugged[id]; ok {
		h.mu.Unlock()
		return fmt.Errorf("add device %s: %w", id, errdefs.ErrAlreadyExists)
	}
	if len(h.free) == 0 {
		h.mu.Unlock()
		return fmt.Errorf("add device %s: all hotplug slots are taken: start the VM with more HotplugSlots", id)
	}
	slot := h.free[0]
	h.free = h.free[1:]
	h.plugged[id] = plugged{slot: slot, busy: true}
	h.mu.Unlock()

	p := plugged{slot: slot}
	err := plug(slot, &p)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		delete(h.plugged, id)
		h.free = append(h.free, slot)
		return fmt.Errorf("add device %s: %w", id, err)
	}
	h.plugged[id] = p
	log.G(ctx).WithField("vm", h.id).Infof("qemu: hot-added %s on %s", p.device, slot)
	return nil
}

func (h *hotplugVM) addBlock(ctx context.Context, slot string, b hypervisor.BlockDevice, p *plugged) error {
	p.node = fmt.Sprintf(blockNodeFmt, b.ID)
	p.device = fmt.Sprintf(blockDevFmt, b.ID)
	err := h.qmp.BlockdevAdd(ctx, map[string]any{
		"driver": "raw", "node-name": p.node, "read-only": b.ReadOnly,
		"file": map[string]any{"driver": "file", "filename": b.Path},
	})
	if err != nil {
		return err
	}
	err = h.qmp.DeviceAdd(ctx, "virtio-blk-pci", p.device, map[string]any{"drive": p.node, "bus": slot, "serial": b.ID})
	if err != nil {
		rctx, cancel := rollbackCtx(ctx)
		defer cancel()
		return errors.Join(err, h.qmp.BlockdevDel(rctx, p.node))
	}
	return nil
}

func (h *hotplugVM) addNet(ctx context.Context, slot string, n hypervisor.NetDevice, p *plugged) (retErr error) {
	p.netdev = fmt.Sprintf(netdevFmt, n.ID)
	p.device = fmt.Sprintf(netDevFmt, n.ID)
	// A running QEMU gets files over QMP (SCM_RIGHTS) under names that
	// netdev_add then consumes.
	var names []string
	defer func() {
		if retErr != nil {
			rctx, cancel := rollbackCtx(ctx)
			defer cancel()
			for _, name := range names {
				// Fails for names netdev_add consumed already; nothing to do then.
				h.qmp.CloseFD(rctx, name)
			}
		}
	}()
	pass := func(kind string, files []*os.File) ([]string, error) {
		var passed []string
		for i, f := range files {
			name := fmt.Sprintf("%s-%s%d", p.netdev, kind, i)
			if err := h.qmp.GetFD(ctx, name, f); err != nil {
				return nil, err
			}
			names = append(names, name)
			passed = append(passed, name)
		}
		return passed, nil
	}
	taps, err := pass("tap", n.TapFiles)
	if err != nil {
		return err
	}
	vhosts, err := pass("vhost", n.VhostFiles)
	if err != nil {
		return err
	}
	args := map[string]any{"type": "tap", "id": p.netdev}
	if len(taps) == 1 {
		args["fd"] = taps[0]
	} else {
		args["fds"] = strings.Join(taps, ":")
	}
	if len(vhosts) > 0 {
		args["vhost"] = true
		if len(vhosts) == 1 {
			args["vhostfd"] = vhosts[0]
		} else {
			args["vhostfds"] = strings.Join(vhosts, ":")
		}
	}
	if err := h.qmp.NetdevAdd(ctx, args); err != nil {
		return err
	}
	props := map[string]any{"netdev": p.netdev, "bus": slot, "romfile": ""}
	if n.MAC != nil {
		props["mac"] = n.MAC.String()
	}
	if n.MTU != 0 {
		props["host_mtu"] = n.MTU
	}
	if q := len(taps); q > 1 {
		props["mq"] = true
		props["vectors"] = 2*q + 2
	}
	if err := h.qmp.DeviceAdd(ctx, "virtio-net-pci", p.device, props); err != nil {
		rctx, cancel := rollbackCtx(ctx)
		defer cancel()
		return errors.Join(err, h.qmp.NetdevDel(rctx, p.netdev))
	}
	return nil
}

// rollbackCtx bounds an undo step: it must run even when ctx has ended (that
// may be why we undo), but not forever.
func rollbackCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
}

// RemoveDevice implements hypervisor.Hotplugger. On PCIe the guest must
// release the device (QEMU then sends DEVICE_DELETED); until it does, the
// device and its slot stay taken and the error says so.
func (h *hotplugVM) RemoveDevice(ctx context.Context, id string) error {
	h.mu.Lock()
	p, ok := h.plugged[id]
	if !ok || p.busy {
		h.mu.Unlock()
		if ok {
			return fmt.Errorf("remove device %s: being added or removed already", id)
		}
		return fmt.Errorf("remove device %s: %w", id, errdefs.ErrNotFound)
	}
	p.busy = true
	h.plugged[id] = p
	h.mu.Unlock()

	err := h.remove(ctx, p)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		p.busy = false
		h.plugged[id] = p
		return fmt.Errorf("remove device %s: %w", id, err)
	}
	delete(h.plugged, id)
	h.free = append(h.free, p.slot)
	return nil
}

func (h *hotplugVM) remove(ctx context.Context, p plugged) error {
	sub := h.qmp.Subscribe("DEVICE_DELETED")
	defer sub.Close()
	var qe *qmp.Error
	err := h.qmp.DeviceDel(ctx, p.device)
	switch {
	case errors.As(err, &qe) && qe.Class == "DeviceNotFound":
		// The guest released it after an earlier RemoveDevice gave up
		// waiting; only the backend is left.
		return h.removeBackend(ctx, p)
	case err != nil:
		return err
	}
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			return fmt.Errorf("the guest has not released it: %w", err)
		}
		var data struct {
			Device string `json:"device"`
		}
		if json.Unmarshal(e.Data, &data) == nil && data.Device == p.device {
			break
		}
	}
	return h.removeBackend(ctx, p)
}

func (h *hotplugVM) removeBackend(ctx context.Context, p plugged) error {
	if p.node != "" {
		return h.qmp.BlockdevDel(ctx, p.node)
	}
	return h.qmp.NetdevDel(ctx, p.netdev)
}
