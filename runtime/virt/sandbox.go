package virt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"

	"github.com/joeyrt/joey/agent"
	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/persist/api"
	"github.com/joeyrt/joey/resource/hostmount"
	"github.com/joeyrt/joey/resource/network"
	"github.com/joeyrt/joey/resource/sharefs"
	"github.com/joeyrt/joey/runtime"
)

// Timeouts of the shutdown path. containerd gives a shim's delete about
// 5 s, and under TCG a guest is slow to do anything: ask once, then kill.
const (
	destroyTimeout  = 2 * time.Second
	powerOffWait    = time.Second
	stopTimeout     = 2 * time.Second
	vmExitedStatus  = 255 // Kata's convention for processes of a VM that died
	oomRetryBackoff = time.Second
)

// sandbox is one VM and its containers.
type sandbox struct {
	id, namespace string
	dir           string
	bundle        string
	events        func(runtime.Event)
	share         *sharefs.Share
	state         *stateKeeper

	// vm, agent and network are set during creation, before the sandbox
	// is shared; network is nil when the spec names no network namespace.
	vm      hypervisor.VM
	holder  *holder // the task's pid for an in-process VMM in its own netns
	agent   *agent.Client
	network *network.Network // guarded by lifecycleMu once shared
	// net shapes the NICs, at boot and for a network attached after it.
	net netShape
	// guestReady is set once the agent's CreateSandbox succeeded.
	guestReady bool

	// closing is closed when Shutdown starts: goroutines that outlive
	// calls stop, and the VM's end is no longer a surprise.
	closing   chan struct{}
	closeOnce sync.Once

	// lifecycleMu serializes CreateContainer, container deletion and
	// Shutdown, which change the set of host mounts.
	lifecycleMu sync.Mutex
	shutDown    bool // guarded by lifecycleMu

	mu         sync.Mutex
	containers map[string]*container // guarded by mu
}

var _ runtime.Sandbox = (*sandbox)(nil)

func newSandbox(sc runtime.SandboxConfig, dir string, share *sharefs.Share, state *stateKeeper) *sandbox {
	events := sc.Events
	if events == nil {
		events = func(runtime.Event) {}
	}
	return &sandbox{
		id:         sc.ID,
		namespace:  sc.Namespace,
		dir:        dir,
		bundle:     sc.Bundle,
		events:     events,
		share:      share,
		state:      state,
		closing:    make(chan struct{}),
		containers: map[string]*container{},
	}
}

// ID implements runtime.Sandbox.
func (s *sandbox) ID() string { return s.id }

// Pid implements runtime.Sandbox: the VMM's pid; when the VMM runs in
// this process, the holder's in the sandbox's own network namespace, or
// ours.
func (s *sandbox) Pid() int {
	if s.holder != nil {
		return s.holder.Pid()
	}
	if s.vm != nil {
		if pid := s.vm.Pid(); pid > 0 {
			return pid
		}
	}
	return os.Getpid()
}

// Container implements runtime.Sandbox.
func (s *sandbox) Container(id string) (runtime.Container, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (s *sandbox) container(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %q in sandbox %s: %w", id, s.id, errdefs.ErrNotFound)
	}
	return c, nil
}

// Containers implements runtime.Sandbox.
func (s *sandbox) Containers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.containers))
	for id := range s.containers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (s *sandbox) allContainers() []*container {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	return cs
}

// vmExited reports whether the VMM has ended.
func (s *sandbox) vmExited() bool {
	select {
	case <-s.vm.Wait():
		return true
	default:
		return false
	}
}

// detach returns a context for work that outlives the call that starts it
// (output pumps, waits): it keeps ctx's values (the logger) and ends when
// the sandbox shuts down.
func (s *sandbox) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// startWatchers starts the goroutines that live as long as the VM.
func (s *sandbox) startWatchers(ctx context.Context) {
	wctx, cancel := s.detach(ctx)
	go func() {
		defer cancel()
		s.watchVM(wctx)
	}()
	go s.watchOOM(wctx)
}

// watchVM waits for the VMM's end. Unless Shutdown caused it, every process
// is marked exited with status 255 so no Wait hangs, and EventVMExited
// tells the service.
func (s *sandbox) watchVM(ctx context.Context) {
	<-s.vm.Wait()
	select {
	case <-s.closing:
		return
	default:
	}
	err := vmExitErr(s.vm)
	log.G(ctx).WithError(err).Error("the sandbox's VM ended unexpectedly")
	s.markAllExited(ctx)
	if err := s.state.update(ctx, func(st *api.SandboxState) { st.Status = api.SandboxStopped }); err != nil {
		log.G(ctx).WithError(err).Warn("record the VM's end")
	}
	s.events(runtime.Event{Kind: runtime.EventVMExited, Err: err})
}

// markAllExited gives every process that has not exited status 255.
func (s *sandbox) markAllExited(ctx context.Context) {
	now := time.Now()
	for _, c := range s.allContainers() {
		for _, p := range c.processes() {
			p.setExit(ctx, runtime.ExitStatus{Code: vmExitedStatus, ExitedAt: now}, false)
		}
	}
}

// watchOOM long-polls the agent for OOM kills until the sandbox closes or
// the VM ends.
func (s *sandbox) watchOOM(ctx context.Context) {
	for {
		ev, err := s.agent.GetOOMEvent(ctx, &protocol.GetOOMEventRequest{})
		if err != nil {
			if ctx.Err() != nil || s.vmExited() {
				return
			}
			log.G(ctx).WithError(err).Debug("wait for OOM events; retrying")
			select {
			case <-ctx.Done():
				return
			case <-s.vm.Wait():
				return
			case <-time.After(oomRetryBackoff):
			}
			continue
		}
		log.G(ctx).WithField("container", ev.ContainerId).Info("OOM kill in the guest")
		s.events(runtime.Event{Kind: runtime.EventOOM, ContainerID: ev.ContainerId})
	}
}

// Shutdown implements runtime.Sandbox. It is idempotent, and a failed
// Shutdown can be called again: each step undoes what is still there.
func (s *sandbox) Shutdown(ctx context.Context) error {
	s.lifecycleMu.Lock()
	defer s.lifecycleMu.Unlock()
	if s.shutDown {
		return nil
	}
	if err := s.teardown(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("shutdown sandbox %s: %w", s.id, err)
	}
	s.shutDown = true
	log.G(ctx).WithField("sandbox", s.id).Info("sandbox shut down")
	return nil
}

// teardown frees everything the sandbox holds, whatever it has got to:
// it is both Shutdown and the rollback of a failed CreateSandbox.
func (s *sandbox) teardown(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.closing) })
	var errs []error
	if s.vm != nil {
		if s.agent != nil && s.guestReady && !s.vmExited() {
			// The agent removes every container and powers the VM off.
			dctx, cancel := context.WithTimeout(ctx, destroyTimeout)
			if _, err := s.agent.DestroySandbox(dctx, &protocol.DestroySandboxRequest{}); err != nil {
				log.G(ctx).WithError(err).Warn("agent: destroy sandbox; stopping the VM anyway")
			}
			cancel()
			select {
			case <-s.vm.Wait():
			case <-time.After(powerOffWait):
			}
		}
		sctx, cancel := context.WithTimeout(ctx, stopTimeout)
		if err := s.vm.Stop(sctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if s.agent != nil {
		s.agent.Close()
	}
	if s.holder != nil {
		if err := s.holder.stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.markAllExited(ctx)
	// The VMM is gone (or Stop failed, and then the TAPs' removal cuts it
	// off the pod network anyway).
	if err := s.teardownNetwork(ctx); err != nil {
		errs = append(errs, err)
	}
	st := s.state.snapshot()
	if err := unmountRecorded(ctx, &st, s.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.state.delete(ctx)
}

// unmountRecorded undoes every mount a sandbox's state records: the
// containers' (volumes, then rootfs), then the sandbox's own, in reverse
// order. Last, anything still mounted under the sandbox's directory (which
// is the runtime's alone) goes too, so that the state can be removed.
func unmountRecorded(ctx context.Context, st *api.SandboxState, dir string) error {
	var errs []error
	for _, c := range st.Containers {
		mounts := slices.Clone(c.Mounts)
		if c.Rootfs != "" {
			mounts = append([]string{c.Rootfs}, mounts...)
		}
		if err := hostmount.UnmountAll(ctx, mounts); err != nil {
			errs = append(errs, err)
		}
	}
	if err := hostmount.UnmountAll(ctx, st.Mounts); err != nil {
		errs = append(errs, err)
	}
	left, err := hostmount.Under(dir)
	if err != nil {
		errs = append(errs, err)
	}
	if len(left) > 0 {
		log.G(ctx).WithField("mounts", left).Warn("unrecorded mounts under the sandbox directory; unmounting them")
		if err := hostmount.Unmount(ctx, dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// agentErr turns an agent's status error back into the errdefs error it
// stands for, so callers can test it with errdefs.Is*.
func agentErr(err error) error {
	return errgrpc.ToNative(err)
}
