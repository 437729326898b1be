package virt

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/log"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/persist/api"
	"github.com/joeyrt/joey/resource/network"
)

// lateNICSlots is how many NICs a sandbox with a namespace of its own can
// receive at Start: `ctr run --cni` and nerdctl configure the task's
// namespace between Create and Start, when the VM already runs.
const lateNICSlots = 2

// guestLinkWait bounds the wait for a hot-added NIC to show up in the
// guest (PCIe hotplug, then the virtio-net driver's probe).
const guestLinkWait = 30 * time.Second

// hotplugSlots is how many empty hotplug slots the VM is started with:
// some for a sandbox in its own namespace on a machine that has hotplug
// (q35), none otherwise (microvm has no hotplug).
func hotplugSlots(cfg *config.Config, ownNetNS bool) int {
	if ownNetNS && cfg.Runtime.Hypervisor == config.HypervisorQEMU && cfg.Hypervisor.QEMU.Machine == config.MachineQ35 {
		return lateNICSlots
	}
	return 0
}

// attachLateNetwork joins to the running VM what appeared in the
// sandbox's own network namespace since Create (CNI run by `ctr run
// --cni`), by hotplug, and configures the guest like at boot. Called when
// the sandbox's own container starts; with nothing there, or a network
// already joined, it does nothing.
func (s *sandbox) attachLateNetwork(ctx context.Context) (retErr error) {
	s.lifecycleMu.Lock()
	defer s.lifecycleMu.Unlock()
	st := s.state.snapshot()
	if s.shutDown || s.network != nil || !st.Network.OwnNetNS {
		return nil
	}
	if err := s.state.update(ctx, func(st *api.SandboxState) { st.Network.Model = s.net.model }); err != nil {
		return fmt.Errorf("attach network: %w", err)
	}
	n, err := network.Setup(ctx, s.netOptions(st.Network.NetNS))
	if err != nil {
		return fmt.Errorf("attach network: %w", err)
	}
	if len(n.Endpoints) == 0 {
		return n.Teardown(ctx)
	}
	hp, ok := s.vm.(hypervisor.Hotplugger)
	if !ok {
		log.G(ctx).WithField("interfaces", len(n.Endpoints)).Warn("interfaces appeared in the sandbox's network namespace after create " +
			"(ctr run --cni), but this VM cannot hotplug them (QEMU's microvm cannot: set hypervisor.qemu.machine = \"q35\"); the container has no network")
		return n.Teardown(ctx)
	}
	s.network = n // from here on Shutdown tears it down
	defer func() {
		if retErr != nil {
			if err := n.Teardown(context.WithoutCancel(ctx)); err != nil {
				log.G(ctx).WithError(err).Warn("undo a failed network attach")
			}
		}
	}()
	devs, err := n.TakeDevices()
	if err != nil {
		return fmt.Errorf("attach network: %w", err)
	}
	for i, d := range devs {
		if err := hp.AddDevice(ctx, d); err != nil { // owns d's files
			for _, rest := range devs[i+1:] {
				rest.Close()
			}
			return fmt.Errorf("attach network: hotplug %s: %w", d.ID, err)
		}
	}
	// The guest sees a hot-added NIC a little later than QEMU has it.
	wctx, cancel := context.WithTimeout(ctx, guestLinkWait)
	defer cancel()
	for {
		err := s.configureGuestNetwork(wctx)
		if err == nil {
			break
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("attach network: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	log.G(ctx).WithField("netns", st.Network.NetNS).WithField("nics", len(devs)).Info("network attached at start (hotplug)")
	return nil
}
