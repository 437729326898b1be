package service

import (
	"context"
	"fmt"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
)

// resizePty sets the terminal size of a process that has one.
func (s *Service) resizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) error {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return err
	}
	if !p.stdio.Terminal {
		return fmt.Errorf("resize terminal of %s: it has no terminal: %w", c.name(r.ExecID), errdefs.ErrFailedPrecondition)
	}
	if err := c.rc.ResizePty(ctx, r.ExecID, r.Width, r.Height); err != nil {
		return fmt.Errorf("resize terminal of %s: %w", c.name(r.ExecID), err)
	}
	return nil
}

// closeIO closes a process's stdin in the guest, so the process sees EOF.
// The host's fifo stays open until the process exits: containerd's client
// may have written data just before, which the runtime is still copying,
// and closing the fifo now would drop it.
func (s *Service) closeIO(ctx context.Context, r *taskAPI.CloseIORequest) error {
	if !r.Stdin {
		return nil
	}
	c, _, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return err
	}
	if err := c.rc.CloseIO(ctx, r.ExecID); err != nil {
		return fmt.Errorf("close stdin of %s: %w", c.name(r.ExecID), err)
	}
	return nil
}
