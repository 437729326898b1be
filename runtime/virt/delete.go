package virt

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/runtime"
)

// removedExitWait is how long Delete waits for the agent to report the
// exit of a created container's init, which the removal kills.
const removedExitWait = 2 * time.Second

// Delete implements runtime.Container: an exec is forgotten; the init takes
// the whole container with it (the guest's container, the host mounts, the
// directory in the share, the record).
func (c *container) Delete(ctx context.Context, execID string) (runtime.ExitStatus, error) {
	if execID != "" {
		c.mu.Lock()
		p, ok := c.execs[execID]
		if !ok {
			c.mu.Unlock()
			return runtime.ExitStatus{}, fmt.Errorf("delete exec %q in %s: %w", execID, c.id, errdefs.ErrNotFound)
		}
		if st := p.state(); st.Status == runtime.StatusRunning {
			c.mu.Unlock()
			return runtime.ExitStatus{}, fmt.Errorf("delete %s: %w: it is running; kill it and wait first", p.name(), errdefs.ErrFailedPrecondition)
		}
		delete(c.execs, execID)
		c.mu.Unlock()
		p.release()
		return p.exitStatus(), nil
	}
	return c.sb.deleteContainer(ctx, c)
}

func (s *sandbox) deleteContainer(ctx context.Context, c *container) (runtime.ExitStatus, error) {
	s.lifecycleMu.Lock()
	defer s.lifecycleMu.Unlock()
	if _, err := s.container(c.id); err != nil {
		return runtime.ExitStatus{}, fmt.Errorf("delete: %w", err)
	}
	if st := c.init.state(); st.Status == runtime.StatusRunning {
		return runtime.ExitStatus{}, fmt.Errorf("delete container %s: %w: its init is running; kill it and wait first", c.id, errdefs.ErrFailedPrecondition)
	}
	if !s.shutDown {
		if !s.vmExited() {
			_, err := s.agent.RemoveContainer(ctx, &protocol.RemoveContainerRequest{ContainerId: c.id})
			if err != nil && !errdefs.IsNotFound(agentErr(err)) {
				return runtime.ExitStatus{}, fmt.Errorf("delete container %s: agent: %w", c.id, agentErr(err))
			}
			// A created init is killed by the removal; its wait reports it.
			select {
			case <-c.init.exitedCh:
			case <-time.After(removedExitWait):
				log.G(ctx).WithField("container", c.id).Warn("no exit status from the removed container's init")
			}
		}
		c.init.setExit(ctx, runtime.ExitStatus{Code: vmExitedStatus, ExitedAt: time.Now()}, false)
		for _, p := range c.processes() {
			p.release()
		}
		if err := s.undoContainer(ctx, c.id, false); err != nil {
			return runtime.ExitStatus{}, fmt.Errorf("delete container %s: %w", c.id, err)
		}
	}
	s.mu.Lock()
	delete(s.containers, c.id)
	s.mu.Unlock()
	return c.init.exitStatus(), nil
}
