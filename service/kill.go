package service

import (
	"context"
	"fmt"
	"syscall"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
)

// kill signals one process, or with All every process of the container.
func (s *Service) kill(ctx context.Context, r *taskAPI.KillRequest) error {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return err
	}
	// As with runc, a process that is gone is "not found": containerd's
	// forced deletes kill first and ignore exactly that.
	if p.finished() && !r.All {
		return fmt.Errorf("kill %s: process already finished: %w", c.name(r.ExecID), errdefs.ErrNotFound)
	}
	if err := c.rc.Kill(ctx, r.ExecID, syscall.Signal(r.Signal), r.All); err != nil {
		return fmt.Errorf("kill %s with signal %d: %w", c.name(r.ExecID), r.Signal, err)
	}
	return nil
}
