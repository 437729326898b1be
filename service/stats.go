package service

import (
	"context"
	"fmt"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/typeurl/v2"
)

// stats returns the container's cgroup v2 metrics from inside the guest,
// typed so that `ctr task metrics` and CRI decode them as cgroup v2 stats.
func (s *Service) stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	m, err := c.rc.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", c.name(""), err)
	}
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", c.name(""), err)
	}
	return &taskAPI.StatsResponse{Stats: a}, nil
}
