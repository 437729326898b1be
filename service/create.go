package service

import (
	"context"
	"fmt"
	"os"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/joeyrt/joey/internal/procutil"
	"github.com/joeyrt/joey/runtime"
	"github.com/joeyrt/joey/service/stdio"
	"github.com/joeyrt/joey/shim/bundle"
)

// create makes a container. The shim's first Create boots the sandbox with
// the container's spec; later ones add containers to it. Creation is
// all-or-nothing: a sandbox booted for a container that then fails is
// stopped again.
func (s *Service) create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, fmt.Errorf("create %s from a checkpoint: joey cannot restore VM sandboxes: %w", r.ID, errdefs.ErrNotImplemented)
	}
	spec, err := bundle.ReadSpec(r.Bundle)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	configPath, err := configPathFrom(ctx, r.Options)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	sandboxID := bundle.SandboxID(r.ID, spec.Annotations)

	s.createMu.Lock()
	defer s.createMu.Unlock()
	s.mu.Lock()
	_, exists := s.containers[r.ID]
	sb, runningID := s.sandbox, s.sandboxID
	s.mu.Unlock()
	switch {
	case exists:
		return nil, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
	case sb != nil && sandboxID != runningID:
		return nil, fmt.Errorf("container %s belongs to sandbox %s, but this shim runs sandbox %s: %w",
			r.ID, sandboxID, runningID, errdefs.ErrFailedPrecondition)
	case sb == nil && bundle.JoinsSandbox(spec.Annotations):
		return nil, fmt.Errorf("container %s is to join sandbox %s, which does not run in this shim: create the sandbox first: %w",
			r.ID, sandboxID, errdefs.ErrFailedPrecondition)
	}

	// Recorded before anything is made, so that a delete after a crash in
	// the middle still finds the sandbox and its configuration.
	rec := bundle.Record{SandboxID: sandboxID, ConfigPath: configPath, ShimPid: os.Getpid()}
	if rec.ShimStartTime, err = procutil.StartTime(rec.ShimPid); err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}
	if err := bundle.WriteRecord(r.Bundle, rec); err != nil {
		return nil, fmt.Errorf("create %s: %w", r.ID, err)
	}

	booted := false
	if sb == nil {
		cfg, err := s.loadConfig(configPath)
		if err != nil {
			return nil, fmt.Errorf("create sandbox %s: load joey configuration: %w", sandboxID, err)
		}
		if s.prepare != nil {
			if err := s.prepare(cfg); err != nil {
				return nil, fmt.Errorf("create sandbox %s: %w", sandboxID, err)
			}
		}
		evctx := context.WithoutCancel(ctx)
		sb, err = s.handler.CreateSandbox(ctx, runtime.SandboxConfig{
			ID:        sandboxID,
			Namespace: s.namespace,
			Spec:      spec,
			Bundle:    r.Bundle,
			Config:    cfg,
			Events:    func(ev runtime.Event) { s.handleSandboxEvent(evctx, ev) },
		})
		if err != nil {
			return nil, fmt.Errorf("create sandbox %s: %w", sandboxID, err)
		}
		booted = true
		defer func() {
			if retErr == nil {
				return
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
			defer cancel()
			if err := sb.Shutdown(sctx); err != nil {
				log.G(ctx).WithError(err).WithField("sandbox", sandboxID).Error("stop the sandbox of a failed create")
			}
		}()
	}

	cfg := stdio.Config{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	pipes, err := stdio.Open(ctx, cfg, stdio.Owner{ContainerID: r.ID, Namespace: s.namespace})
	if err != nil {
		return nil, fmt.Errorf("create %s: stdio: %w", r.ID, err)
	}
	defer func() {
		if retErr != nil {
			pipes.Close()
		}
	}()

	rc, err := sb.CreateContainer(ctx, runtime.ContainerConfig{
		ID:     r.ID,
		Bundle: r.Bundle,
		Spec:   spec,
		Rootfs: mounts(r.Rootfs),
		IO:     runtimeIO(pipes, r.Terminal),
	})
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", r.ID, err)
	}

	pid := sb.Pid()
	s.mu.Lock()
	if booted {
		s.sandbox, s.sandboxID, s.pid = sb, sandboxID, pid
	}
	s.containers[r.ID] = newContainer(r.ID, r.Bundle, rc, newProcess("", cfg, pipes))
	s.mu.Unlock()

	rec.Pid = pid
	if err := bundle.WriteRecord(r.Bundle, rec); err != nil {
		log.G(ctx).WithError(err).Warn("record the task pid in the bundle")
	}
	s.events.push(&eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      r.Bundle,
		Rootfs:      r.Rootfs,
		IO: &eventstypes.TaskIO{
			Stdin:    r.Stdin,
			Stdout:   r.Stdout,
			Stderr:   r.Stderr,
			Terminal: r.Terminal,
		},
		Checkpoint: r.Checkpoint,
		Pid:        uint32(pid),
	})
	return &taskAPI.CreateTaskResponse{Pid: uint32(pid)}, nil
}

func mounts(in []*types.Mount) []mount.Mount {
	out := make([]mount.Mount, 0, len(in))
	for _, m := range in {
		out = append(out, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out
}

func runtimeIO(p *stdio.Pipes, terminal bool) runtime.IO {
	return runtime.IO{Stdin: p.Stdin, Stdout: p.Stdout, Stderr: p.Stderr, Terminal: terminal}
}
