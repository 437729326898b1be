package service

import (
	"context"
	"fmt"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/joeyrt/joey/runtime"
)

// delete removes a stopped (or never started) process; deleting the init
// removes the container, and deleting the sandbox's last container stops
// the sandbox.
func (s *Service) delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st, err := s.deleteProcess(ctx, c, p)
	if err != nil {
		return nil, err
	}
	pid := s.taskPid()
	resp := &taskAPI.DeleteResponse{Pid: pid, ExitStatus: st.Code, ExitedAt: protobuf.ToTimestamp(st.ExitedAt)}

	if r.ExecID != "" {
		c.mu.Lock()
		delete(c.procs, r.ExecID)
		c.mu.Unlock()
		return resp, nil
	}

	s.mu.Lock()
	delete(s.containers, c.id)
	left := len(s.containers)
	s.mu.Unlock()
	// Execs that never ran have nobody else to release their stdio.
	c.mu.Lock()
	for id, ep := range c.procs {
		if id != "" {
			ep.pipes.Close()
			ep.finish(nil)
		}
	}
	c.mu.Unlock()
	<-s.events.push(&eventstypes.TaskDelete{
		ContainerID: c.id,
		Pid:         pid,
		ExitStatus:  st.Code,
		ExitedAt:    resp.ExitedAt,
	})
	if left == 0 {
		// The VM goes with its last container, so that a finished
		// `ctr task rm` leaves nothing running. Should this fail, the
		// shim's shutdown tries again.
		if err := s.stopSandbox(ctx); err != nil {
			log.G(ctx).WithError(err).Error("stop the sandbox after its last container")
		}
	}
	return resp, nil
}

// deleteProcess deletes p in the runtime and returns how it ended.
func (s *Service) deleteProcess(ctx context.Context, c *container, p *process) (runtime.ExitStatus, error) {
	p.mu.Lock()
	if !p.started {
		st, err := s.deleteUnstarted(ctx, c, p)
		p.mu.Unlock()
		if err != nil {
			return runtime.ExitStatus{}, err
		}
		if err := p.pipes.Close(); err != nil {
			log.G(ctx).WithError(err).WithField("container", c.id).Warn("close stdio")
		}
		p.finish(&st)
		return st, nil
	}
	p.mu.Unlock()

	if !p.finished() {
		ps, err := c.rc.State(p.execID)
		if err != nil {
			return runtime.ExitStatus{}, fmt.Errorf("delete %s: %w", c.name(p.execID), err)
		}
		if ps.Status != runtime.StatusStopped {
			return runtime.ExitStatus{}, fmt.Errorf("delete %s: it is %s: kill it first: %w",
				c.name(p.execID), ps.Status, errdefs.ErrFailedPrecondition)
		}
		// Stopped: its exit event is on its way; Delete answers after it.
		select {
		case <-p.done:
		case <-ctx.Done():
			return runtime.ExitStatus{}, fmt.Errorf("delete %s: waiting for its exit to be published: %w", c.name(p.execID), ctx.Err())
		}
	}
	st, err := c.rc.Delete(ctx, p.execID)
	if err != nil {
		return runtime.ExitStatus{}, fmt.Errorf("delete %s: %w", c.name(p.execID), err)
	}
	p.mu.Lock()
	p.deleted = true
	p.mu.Unlock()
	// What containerd was told in the exit event wins over a second answer.
	if exit := p.exitStatus(); exit != nil {
		st = *exit
	}
	return st, nil
}

// deleteUnstarted deletes a process that never ran.
//
// Preconditions: p.mu is held, which keeps Start out: the process ends up
// deleted, or not.
func (s *Service) deleteUnstarted(ctx context.Context, c *container, p *process) (runtime.ExitStatus, error) {
	if p.deleted {
		return runtime.ExitStatus{}, fmt.Errorf("delete %s: %w", c.name(p.execID), errdefs.ErrNotFound)
	}
	st, err := c.rc.Delete(ctx, p.execID)
	if err != nil {
		return runtime.ExitStatus{}, fmt.Errorf("delete %s: %w", c.name(p.execID), err)
	}
	p.deleted = true
	if p.exit != nil { // the VM died before it could start
		st = *p.exit
	}
	return st, nil
}
