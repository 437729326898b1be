package service

import (
	"context"
	"fmt"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
)

// start runs a created init or exec process and begins waiting for its
// exit. The start event is queued before the waiting begins, so an exit,
// however quick, is published after it.
func (s *Service) start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.deleted:
		return nil, fmt.Errorf("start %s: %w", c.name(r.ExecID), errdefs.ErrNotFound)
	case p.started:
		return nil, fmt.Errorf("start %s: already started: %w", c.name(r.ExecID), errdefs.ErrFailedPrecondition)
	case p.exit != nil:
		return nil, fmt.Errorf("start %s: its sandbox has stopped: %w", c.name(r.ExecID), errdefs.ErrFailedPrecondition)
	}
	if r.ExecID != "" {
		c.mu.Lock()
		if c.initExited {
			c.mu.Unlock()
			return nil, fmt.Errorf("start %s: the container's init process has exited: %w", c.name(r.ExecID), errdefs.ErrFailedPrecondition)
		}
		c.execs.Add(1)
		c.mu.Unlock()
	}
	if err := c.rc.Start(ctx, r.ExecID); err != nil {
		if r.ExecID != "" {
			c.execs.Done()
		}
		return nil, fmt.Errorf("start %s: %w", c.name(r.ExecID), err)
	}
	p.started = true
	pid := s.taskPid()
	if r.ExecID == "" {
		s.events.push(&eventstypes.TaskStart{ContainerID: c.id, Pid: pid})
	} else {
		s.events.push(&eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: r.ExecID, Pid: pid})
	}
	wctx, cancel := s.detach(ctx)
	go s.waitExit(wctx, cancel, c, p)
	return &taskAPI.StartResponse{Pid: pid}, nil
}
