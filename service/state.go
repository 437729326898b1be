package service

import (
	"context"
	"fmt"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/protobuf"

	"github.com/joeyrt/joey/runtime"
)

// state reports a process: the runtime's view, the stdio containerd gave,
// and how it ended.
func (s *Service) state(_ context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	ps, err := c.rc.State(r.ExecID)
	if err != nil {
		return nil, fmt.Errorf("state of %s: %w", c.name(r.ExecID), err)
	}
	id := r.ExecID
	if id == "" {
		id = c.id
	}
	resp := &taskAPI.StateResponse{
		ID:       id,
		ExecID:   r.ExecID,
		Bundle:   c.bundle,
		Pid:      s.taskPid(),
		Status:   taskStatus(ps.Status),
		Stdin:    p.stdio.Stdin,
		Stdout:   p.stdio.Stdout,
		Stderr:   p.stdio.Stderr,
		Terminal: p.stdio.Terminal,
	}
	exit := p.exitStatus()
	if exit == nil {
		exit = ps.Exit
	}
	if exit != nil {
		resp.Status = task.Status_STOPPED
		resp.ExitStatus = exit.Code
		resp.ExitedAt = protobuf.ToTimestamp(exit.ExitedAt)
	}
	return resp, nil
}

func taskStatus(st runtime.ProcessStatus) task.Status {
	switch st {
	case runtime.StatusCreated:
		return task.Status_CREATED
	case runtime.StatusRunning:
		return task.Status_RUNNING
	case runtime.StatusPaused:
		return task.Status_PAUSED
	case runtime.StatusStopped:
		return task.Status_STOPPED
	default:
		return task.Status_UNKNOWN
	}
}
