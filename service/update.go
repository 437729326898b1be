package service

import (
	"context"
	"fmt"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// update changes a running container's resources.
func (s *Service) update(ctx context.Context, r *taskAPI.UpdateTaskRequest) error {
	c, err := s.container(r.ID)
	if err != nil {
		return err
	}
	if r.Resources == nil {
		return fmt.Errorf("update %s: the request has no resources: %w", c.name(""), errdefs.ErrInvalidArgument)
	}
	v, err := typeurl.UnmarshalAny(r.Resources)
	if err != nil {
		return fmt.Errorf("update %s: resources: %v: %w", c.name(""), err, errdefs.ErrInvalidArgument)
	}
	res, ok := v.(*specs.LinuxResources)
	if !ok {
		return fmt.Errorf("update %s: resources are a %T, not OCI Linux resources: %w", c.name(""), v, errdefs.ErrInvalidArgument)
	}
	if err := c.rc.Update(ctx, res); err != nil {
		return fmt.Errorf("update %s: %w", c.name(""), err)
	}
	return nil
}
