package service

import (
	"context"
	"os"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"

	"github.com/joeyrt/joey/internal/version"
)

// connect tells containerd the shim's pid and the task's (the VMM's).
func (s *Service) connect(_ context.Context, _ *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	return &taskAPI.ConnectResponse{
		ShimPid: uint32(os.Getpid()),
		TaskPid: s.taskPid(),
		Version: version.Version,
	}, nil
}
