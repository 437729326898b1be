package service

import (
	"context"
	"fmt"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
)

// wait blocks until the process's exit has been published, or ctx ends.
func (s *Service) wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for %s: %w", c.name(r.ExecID), ctx.Err())
	}
	st := p.exitStatus()
	if st == nil {
		return nil, fmt.Errorf("wait for %s: deleted before it ran: %w", c.name(r.ExecID), errdefs.ErrNotFound)
	}
	return &taskAPI.WaitResponse{ExitStatus: st.Code, ExitedAt: protobuf.ToTimestamp(st.ExitedAt)}, nil
}
