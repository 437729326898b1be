package service

import (
	"context"
	"fmt"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/service/stdio"
)

// exec adds a process to a container; Start runs it.
func (s *Service) exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (retErr error) {
	if r.ExecID == "" {
		return fmt.Errorf("exec in container %s: exec id is empty: %w", r.ID, errdefs.ErrInvalidArgument)
	}
	c, err := s.container(r.ID)
	if err != nil {
		return err
	}
	spec, err := processSpec(r)
	if err != nil {
		return err
	}

	// Reserve the id: opening stdio may wait for containerd's client, and
	// a second exec with the same id must fail rather than race.
	c.mu.Lock()
	switch {
	case c.procs[r.ExecID] != nil || c.reserved[r.ExecID]:
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", c.name(r.ExecID), errdefs.ErrAlreadyExists)
	case c.initExited:
		c.mu.Unlock()
		return fmt.Errorf("%s: the container's init process has exited: %w", c.name(r.ExecID), errdefs.ErrFailedPrecondition)
	}
	c.reserved[r.ExecID] = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.reserved, r.ExecID)
		c.mu.Unlock()
	}()

	cfg := stdio.Config{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	pipes, err := stdio.Open(ctx, cfg, stdio.Owner{ContainerID: r.ID, Namespace: s.namespace})
	if err != nil {
		return fmt.Errorf("%s: stdio: %w", c.name(r.ExecID), err)
	}
	defer func() {
		if retErr != nil {
			pipes.Close()
		}
	}()
	if err := c.rc.Exec(ctx, r.ExecID, spec, runtimeIO(pipes, r.Terminal)); err != nil {
		return fmt.Errorf("%s: %w", c.name(r.ExecID), err)
	}
	c.mu.Lock()
	c.procs[r.ExecID] = newProcess(r.ExecID, cfg, pipes)
	c.mu.Unlock()
	s.events.push(&eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return nil
}

// processSpec decodes the OCI process of an exec request.
func processSpec(r *taskAPI.ExecProcessRequest) (*specs.Process, error) {
	if r.Spec == nil {
		return nil, fmt.Errorf("exec %s in container %s: the request has no process spec: %w", r.ExecID, r.ID, errdefs.ErrInvalidArgument)
	}
	v, err := typeurl.UnmarshalAny(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("exec %s in container %s: process spec: %v: %w", r.ExecID, r.ID, err, errdefs.ErrInvalidArgument)
	}
	spec, ok := v.(*specs.Process)
	if !ok {
		return nil, fmt.Errorf("exec %s in container %s: spec is a %T, not an OCI process: %w", r.ExecID, r.ID, v, errdefs.ErrInvalidArgument)
	}
	return spec, nil
}
