package virt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/joeyrt/joey/internal/netnsexec"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/persist/api"
)

// ownNetNSFile is where, in the sandbox's directory, a network namespace
// the sandbox made for itself is bound.
const ownNetNSFile = "netns"

// wantsOwnNetNS reports whether spec asks for a new network namespace (an
// entry without a path), as `ctr run` without --net-host and `ctr run
// --cni` do. The VMM is then started in a fresh namespace, so that the
// task's pid containerd sees lives in the sandbox's namespace and not in
// the host's: `ctr run --cni` configures CNI in /proc/PID/ns/net between
// Create and Start, and must never do that to the host's namespace. An
// in-process VMM has the shim's pid, which cannot move: a holder process
// stands in for it there.
func wantsOwnNetNS(spec *specs.Spec) bool {
	if spec == nil || spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path == ""
		}
	}
	return false
}

// makeOwnNetNS creates the sandbox's own network namespace, bound to a
// file in its directory. The bind mount is recorded as a sandbox mount
// before it exists, so teardown and Cleanup unmount it like the others;
// the namespace goes when its last user, the VMM, has gone too.
func (s *sandbox) makeOwnNetNS(ctx context.Context) (string, error) {
	path := filepath.Join(s.dir, ownNetNSFile)
	err := s.state.update(ctx, func(st *api.SandboxState) {
		st.Network = api.Network{NetNS: path, OwnNetNS: true}
		st.Mounts = append(st.Mounts, path)
	})
	if err != nil {
		return "", fmt.Errorf("own network namespace: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return "", fmt.Errorf("own network namespace: %w", err)
	}
	f.Close()
	if err := netnsexec.Create(path); err != nil {
		return "", fmt.Errorf("own network namespace: %w", err)
	}
	log.G(ctx).WithField("netns", path).Debug("the VMM runs in a network namespace of its own")
	return path, nil
}

// startVM starts the VM through drv, inside a network namespace of the
// sandbox's own when ownNetNS is set. Like drv.Start, it owns vmcfg's
// files whatever happens.
func (s *sandbox) startVM(ctx context.Context, drv hypervisor.Driver, ownNetNS bool, vmcfg *hypervisor.Config) (hypervisor.VM, error) {
	if !ownNetNS {
		return drv.Start(ctx, vmcfg)
	}
	ns, err := s.makeOwnNetNS(ctx)
	if err != nil {
		vmcfg.CloseFiles()
		return nil, err
	}
	var vm hypervisor.VM
	started := false
	err = inNetNS(ns, func() error {
		started = true
		var err error
		vm, err = drv.Start(ctx, vmcfg)
		return err
	})
	if !started {
		vmcfg.CloseFiles()
	}
	if err != nil || vm.Pid() > 0 {
		return vm, err
	}
	if err := s.startHolder(ctx, ns); err != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		if serr := vm.Stop(sctx); serr != nil {
			err = errors.Join(err, serr)
		}
		return nil, err
	}
	return vm, nil
}

// startHolder gives an in-process VMM's sandbox its task pid in netns
// (see holder.go) and records it, so a cleanup after a crash finds it.
func (s *sandbox) startHolder(ctx context.Context, netns string) error {
	h, err := startHolder(netns)
	if err != nil {
		return err
	}
	if err := s.state.update(ctx, func(st *api.SandboxState) { st.VMM.Helpers = append(st.VMM.Helpers, h.rec) }); err != nil {
		h.stop(ctx)
		return err
	}
	s.holder = h
	log.G(ctx).WithField("pid", h.Pid()).Debug("the in-process VMM's sandbox has a holder process in its network namespace")
	return nil
}

// inNetNS runs fn on a thread inside the network namespace at path; what
// fn starts (the VMM's process) is born there.
func inNetNS(path string, fn func() error) error { return netnsexec.Run(path, fn) }
