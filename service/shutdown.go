package service

import (
	"context"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/log"
)

// shutdownShim ends the shim once it holds no container: containerd asks
// after every task delete, and a shim shared by a pod must stay for the
// pod's other containers. The shutdown service's callback stops the sandbox
// if it still runs and sends the last events; the process then exits.
func (s *Service) shutdownShim(ctx context.Context, _ *taskAPI.ShutdownRequest) error {
	s.mu.Lock()
	left := len(s.containers)
	s.mu.Unlock()
	if left > 0 {
		return nil
	}
	log.G(ctx).Info("no container left: shutting the shim down")
	s.shutdown.Shutdown()
	return nil
}
