package service

import (
	"context"
	"fmt"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
)

// checkpoint is not supported: a container's state lives in a VM's memory,
// and saving it means snapshotting the VM, which joey does not do yet.
func (s *Service) checkpoint(_ context.Context, r *taskAPI.CheckpointTaskRequest) error {
	return fmt.Errorf("checkpoint %s: joey cannot checkpoint containers of a VM sandbox: %w", r.ID, errdefs.ErrNotImplemented)
}
