package service

import (
	"context"
	"fmt"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
)

// pause freezes every process of a container.
func (s *Service) pause(ctx context.Context, r *taskAPI.PauseRequest) error {
	c, err := s.container(r.ID)
	if err != nil {
		return err
	}
	if err := c.rc.Pause(ctx); err != nil {
		return fmt.Errorf("pause %s: %w", c.name(""), err)
	}
	s.events.push(&eventstypes.TaskPaused{ContainerID: c.id})
	return nil
}

// resume thaws a paused container.
func (s *Service) resume(ctx context.Context, r *taskAPI.ResumeRequest) error {
	c, err := s.container(r.ID)
	if err != nil {
		return err
	}
	if err := c.rc.Resume(ctx); err != nil {
		return fmt.Errorf("resume %s: %w", c.name(""), err)
	}
	s.events.push(&eventstypes.TaskResumed{ContainerID: c.id})
	return nil
}
