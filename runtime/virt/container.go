package virt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/persist"
	"github.com/joeyrt/joey/persist/api"
	"github.com/joeyrt/joey/resource/hostmount"
	"github.com/joeyrt/joey/resource/rootfs"
	"github.com/joeyrt/joey/resource/volume"
	"github.com/joeyrt/joey/runtime"
)

// container is one container of a sandbox.
type container struct {
	sb     *sandbox
	id     string
	bundle string

	init *process

	mu     sync.Mutex
	execs  map[string]*process // guarded by mu
	paused bool                // guarded by mu
}

var _ runtime.Container = (*container)(nil)

// CreateContainer implements runtime.Sandbox: it mounts the rootfs and the
// volumes into the share, has the agent create the container from the
// guest's copy of the spec, and starts copying its stdio. On error nothing
// of it is left.
func (s *sandbox) CreateContainer(ctx context.Context, cc runtime.ContainerConfig) (_ runtime.Container, retErr error) {
	if err := validateContainerConfig(cc); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cc.ID, err)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox", s.id).WithField("container", cc.ID))
	s.lifecycleMu.Lock()
	defer s.lifecycleMu.Unlock()
	if s.shutDown || s.vmExited() {
		return nil, fmt.Errorf("create container %s: sandbox %s is not running: %w", cc.ID, s.id, errdefs.ErrFailedPrecondition)
	}
	if _, err := s.container(cc.ID); err == nil {
		return nil, fmt.Errorf("create container %s: %w", cc.ID, errdefs.ErrAlreadyExists)
	}
	bundle := cc.Bundle
	if bundle == "" {
		bundle = s.bundle
	}
	if err := s.state.updateContainer(ctx, cc.ID, func(c *api.ContainerState) {
		c.Status = api.ContainerCreated
		c.Bundle = bundle
		c.CreatedAt = time.Now().UTC()
		c.Annotations = cc.Spec.Annotations
		c.Pid = uint32(s.Pid())
	}); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cc.ID, err)
	}
	created := false
	defer func() {
		if retErr != nil {
			if err := s.undoContainer(context.WithoutCancel(ctx), cc.ID, created); err != nil {
				log.G(ctx).WithError(err).Error("rollback of a failed container creation")
				retErr = errors.Join(retErr, fmt.Errorf("rollback: %w", err))
			}
		}
	}()

	cdir, err := s.share.ContainerDir(cc.ID)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cc.ID, err)
	}
	rootHost := filepath.Join(cdir, "rootfs")
	if err := rootfs.Mount(ctx, rootHost, cc.Rootfs, cc.Spec.Root, bundle, s.state.rootfsRecorder(cc.ID)); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cc.ID, err)
	}
	volHost := filepath.Join(cdir, "mounts")
	volGuest, err := s.share.GuestPath(volHost)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cc.ID, err)
	}
	mounts, err := volume.Share(ctx, cc.Spec.Mounts, volume.Options{
		Bundle: bundle, HostDir: volHost, GuestDir: volGuest, GuestShm: guestShmDir,
	}, s.state.containerMountRecorder(cc.ID))
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cc.ID, err)
	}
	rootGuest, err := s.share.GuestPath(rootHost)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cc.ID, err)
	}
	gspec, err := guestSpec(ctx, cc.Spec, cc.ID, rootGuest, mounts)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w: %w", cc.ID, errdefs.ErrInvalidArgument, err)
	}
	data, err := json.Marshal(gspec)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cc.ID, err)
	}
	if _, err := s.agent.CreateContainer(ctx, &protocol.CreateContainerRequest{ContainerId: cc.ID, OciSpec: data}); err != nil {
		return nil, fmt.Errorf("create container %s: agent: %w", cc.ID, agentErr(err))
	}
	created = true

	c := &container{sb: s, id: cc.ID, bundle: bundle, execs: map[string]*process{}}
	c.init = newProcess(c, "", cc.Spec.Process, cc.IO)
	c.init.attach(ctx)
	c.init.startWait(ctx)
	s.mu.Lock()
	s.containers[cc.ID] = c
	s.mu.Unlock()
	return c, nil
}

func validateContainerConfig(cc runtime.ContainerConfig) error {
	switch {
	case cc.Spec == nil:
		return fmt.Errorf("%w: no OCI spec", errdefs.ErrInvalidArgument)
	case cc.Spec.Process == nil:
		return fmt.Errorf("%w: the spec has no process: set process.args", errdefs.ErrInvalidArgument)
	}
	return persist.ValidateID(cc.ID)
}

// undoContainer removes what a container's creation made: the guest's
// container (when the agent created it), its host mounts, its directory in
// the share and its record.
func (s *sandbox) undoContainer(ctx context.Context, id string, inGuest bool) error {
	var errs []error
	if inGuest && !s.vmExited() {
		if _, err := s.agent.RemoveContainer(ctx, &protocol.RemoveContainerRequest{ContainerId: id}); err != nil && !errdefs.IsNotFound(agentErr(err)) {
			errs = append(errs, fmt.Errorf("agent: remove container: %w", agentErr(err)))
		}
	}
	st := s.state.snapshot()
	rec := st.Containers[id]
	mounts := append([]string{rec.Rootfs}, rec.Mounts...)
	if rec.Rootfs == "" {
		mounts = rec.Mounts
	}
	if err := hostmount.UnmountAll(ctx, mounts); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err // the record stays, so a cleanup still finds the mounts
	}
	if err := s.share.RemoveContainerDir(id); err != nil {
		return err
	}
	return s.state.update(ctx, func(st *api.SandboxState) { delete(st.Containers, id) })
}

// ID implements runtime.Container.
func (c *container) ID() string { return c.id }

// process returns the init ("") or an exec.
func (c *container) process(execID string) (*process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %q in container %s: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// processes returns the init and every exec.
func (c *container) processes() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := []*process{c.init}
	for _, p := range c.execs {
		ps = append(ps, p)
	}
	return ps
}

// Exec implements runtime.Container. The agent starts an exec as soon as
// it is told about it, so the agent hears of it at Start(execID).
func (c *container) Exec(ctx context.Context, execID string, p *specs.Process, io runtime.IO) error {
	switch {
	case execID == "":
		return fmt.Errorf("exec in %s: %w: exec id is empty", c.id, errdefs.ErrInvalidArgument)
	case p == nil || len(p.Args) == 0:
		return fmt.Errorf("exec %s in %s: %w: process.args is empty", execID, c.id, errdefs.ErrInvalidArgument)
	}
	if c.init.exited() {
		return fmt.Errorf("exec %s in %s: %w: the container's init has exited", execID, c.id, errdefs.ErrFailedPrecondition)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.execs[execID]; ok {
		return fmt.Errorf("exec %s in %s: %w", execID, c.id, errdefs.ErrAlreadyExists)
	}
	c.execs[execID] = newProcess(c, execID, p, io)
	return nil
}

// Start implements runtime.Container.
func (c *container) Start(ctx context.Context, execID string) error {
	p, err := c.process(execID)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if execID == "" && c.id == c.sb.id {
		// `ctr run --cni` has set the network up by now.
		if err := c.sb.attachLateNetwork(ctx); err != nil {
			return fmt.Errorf("start: %w", err)
		}
	}
	if err := p.start(ctx); err != nil {
		return err
	}
	if execID == "" {
		return c.sb.state.updateContainer(ctx, c.id, func(cs *api.ContainerState) {
			if cs.Status == api.ContainerCreated {
				cs.Status = api.ContainerRunning
			}
		})
	}
	return nil
}

// Kill implements runtime.Container.
func (c *container) Kill(ctx context.Context, execID string, sig syscall.Signal, all bool) error {
	p, err := c.process(execID)
	if err != nil {
		return fmt.Errorf("kill: %w", err)
	}
	return p.kill(ctx, sig, all)
}

// Wait implements runtime.Container.
func (c *container) Wait(ctx context.Context, execID string) (runtime.ExitStatus, error) {
	p, err := c.process(execID)
	if err != nil {
		return runtime.ExitStatus{}, fmt.Errorf("wait: %w", err)
	}
	return p.wait(ctx)
}

// ResizePty implements runtime.Container.
func (c *container) ResizePty(ctx context.Context, execID string, width, height uint32) error {
	p, err := c.process(execID)
	if err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	return p.resize(ctx, width, height)
}

// CloseIO implements runtime.Container.
func (c *container) CloseIO(ctx context.Context, execID string) error {
	p, err := c.process(execID)
	if err != nil {
		return fmt.Errorf("close io: %w", err)
	}
	return p.closeStdin(ctx)
}

// State implements runtime.Container.
func (c *container) State(execID string) (runtime.ProcessState, error) {
	p, err := c.process(execID)
	if err != nil {
		return runtime.ProcessState{}, fmt.Errorf("state: %w", err)
	}
	st := p.state()
	c.mu.Lock()
	paused := c.paused
	c.mu.Unlock()
	if execID == "" && paused && st.Status == runtime.StatusRunning {
		st.Status = runtime.StatusPaused
	}
	return st, nil
}

// Pause implements runtime.Container.
func (c *container) Pause(ctx context.Context) error {
	if _, err := c.sb.agent.PauseContainer(ctx, &protocol.PauseContainerRequest{ContainerId: c.id}); err != nil {
		return fmt.Errorf("pause %s: %w", c.id, agentErr(err))
	}
	c.setPaused(true)
	return c.sb.state.updateContainer(ctx, c.id, func(cs *api.ContainerState) { cs.Status = api.ContainerPaused })
}

// Resume implements runtime.Container.
func (c *container) Resume(ctx context.Context) error {
	if _, err := c.sb.agent.ResumeContainer(ctx, &protocol.ResumeContainerRequest{ContainerId: c.id}); err != nil {
		return fmt.Errorf("resume %s: %w", c.id, agentErr(err))
	}
	c.setPaused(false)
	return c.sb.state.updateContainer(ctx, c.id, func(cs *api.ContainerState) { cs.Status = api.ContainerRunning })
}

func (c *container) setPaused(v bool) {
	c.mu.Lock()
	c.paused = v
	c.mu.Unlock()
}

// Update implements runtime.Container.
func (c *container) Update(ctx context.Context, r *specs.LinuxResources) error {
	if r == nil {
		return fmt.Errorf("update %s: %w: resources are nil", c.id, errdefs.ErrInvalidArgument)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("update %s: %w", c.id, err)
	}
	if _, err := c.sb.agent.UpdateContainer(ctx, &protocol.UpdateContainerRequest{ContainerId: c.id, Resources: data}); err != nil {
		return fmt.Errorf("update %s: %w", c.id, agentErr(err))
	}
	return nil
}

// Stats implements runtime.Container.
func (c *container) Stats(ctx context.Context) (*cgroupsv2.Metrics, error) {
	resp, err := c.sb.agent.StatsContainer(ctx, &protocol.StatsContainerRequest{ContainerId: c.id})
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", c.id, agentErr(err))
	}
	return metrics(resp), nil
}

// Pids implements runtime.Container.
func (c *container) Pids(ctx context.Context) ([]int, error) {
	resp, err := c.sb.agent.ListProcesses(ctx, &protocol.ListProcessesRequest{ContainerId: c.id})
	if err != nil {
		return nil, fmt.Errorf("pids of %s: %w", c.id, agentErr(err))
	}
	pids := make([]int, len(resp.Pids))
	for i, p := range resp.Pids {
		pids[i] = int(p)
	}
	slices.Sort(pids)
	return pids, nil
}
