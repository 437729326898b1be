package virt

import (
	"context"
	"fmt"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/persist/api"
	"github.com/joeyrt/joey/resource/network"
)

// podNetNS is the network namespace the sandbox's spec names by path: the
// one CRI (or `ctr run --with-ns network:PATH`) prepared with CNI. A spec
// without one (a new, empty namespace, or none) gets a VM without a NIC.
func podNetNS(spec *specs.Spec) string {
	if spec == nil || spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// netShape is how the sandbox's NICs are made, at boot and when a
// network appears after it.
type netShape struct {
	model  string
	queues int
	// noVhost: the built-in VMM serves the queues in process; vhost-net
	// would take them away from it.
	noVhost bool
}

func newNetShape(cfg *config.Config, vcpus int) netShape {
	sh := netShape{model: cfg.Runtime.NetworkModel, queues: vcpus}
	if cfg.Runtime.Hypervisor == config.HypervisorBuiltin {
		// One queue per NIC is what its virtio-net serves.
		sh.queues, sh.noVhost = 1, true
	}
	return sh
}

// netOptions are network.Setup's options for the pod namespace netnsPath.
func (s *sandbox) netOptions(netnsPath string) network.Options {
	return network.Options{
		NetNS:      netnsPath,
		Model:      network.Model(s.net.model),
		Queues:     s.net.queues,
		NoVhostNet: s.net.noVhost,
		Record:     s.recordEndpoint,
	}
}

// setupNetwork joins the pod's network namespace to the VM about to boot
// (cold plug): it records the namespace, makes the endpoints (each recorded
// before its device exists) and returns the VM's NICs, whose files the
// hypervisor's Start then owns. With no namespace path it does nothing.
// On error what it made is gone again or, if undoing failed, still
// recorded for the sandbox's teardown.
func (s *sandbox) setupNetwork(ctx context.Context, netnsPath string) ([]hypervisor.NetDevice, error) {
	if netnsPath == "" {
		return nil, nil
	}
	model := network.Model(s.net.model)
	err := s.state.update(ctx, func(st *api.SandboxState) {
		st.Network = api.Network{NetNS: netnsPath, Model: string(model)}
	})
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	n, err := network.Setup(ctx, s.netOptions(netnsPath))
	if err != nil {
		return nil, err
	}
	s.network = n
	devs, err := n.TakeDevices()
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	log.G(ctx).WithField("netns", netnsPath).WithField("model", model).WithField("nics", len(devs)).
		Info("pod network joined to the VM")
	return devs, nil
}

// recordEndpoint is a network.Recorder into the sandbox's state.
func (s *sandbox) recordEndpoint(ctx context.Context, e api.Endpoint) error {
	return s.state.update(ctx, func(st *api.SandboxState) {
		st.Network.Endpoints = append(st.Network.Endpoints, e)
	})
}

// configureGuestNetwork makes the guest a copy of the pod's namespace:
// the interfaces (found in the guest by MAC) with their addresses and MTUs,
// then the routes, then the neighbours the namespace pinned.
func (s *sandbox) configureGuestNetwork(ctx context.Context) error {
	if s.network == nil {
		return nil
	}
	for _, in := range s.network.Interfaces() {
		if _, err := s.agent.UpdateInterface(ctx, &protocol.UpdateInterfaceRequest{Interface: in}); err != nil {
			return fmt.Errorf("guest network: interface %q (%s): %w", in.Name, in.HwAddr, agentErr(err))
		}
	}
	if len(s.network.Routes) > 0 {
		if _, err := s.agent.UpdateRoutes(ctx, &protocol.UpdateRoutesRequest{Routes: s.network.Routes}); err != nil {
			return fmt.Errorf("guest network: routes: %w", agentErr(err))
		}
	}
	if len(s.network.Neighbors) > 0 {
		if _, err := s.agent.AddARPNeighbors(ctx, &protocol.AddARPNeighborsRequest{Neighbors: s.network.Neighbors}); err != nil {
			return fmt.Errorf("guest network: neighbors: %w", agentErr(err))
		}
	}
	return nil
}

// teardownNetwork removes what the sandbox added to the pod's namespace.
// Call it after the VM stopped: the VMM holds the TAPs' queues until then.
// When Setup failed and could not undo everything, the state still records
// the endpoints; they go the way a cleanup after a crash would remove them.
func (s *sandbox) teardownNetwork(ctx context.Context) error {
	if s.network != nil {
		return s.network.Teardown(ctx)
	}
	st := s.state.snapshot()
	return network.TeardownFromState(ctx, st.Network.NetNS, st.Network.Endpoints)
}
