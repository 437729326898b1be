package container

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Exec starts p as an additional process, named execID, in container id,
// which must have a live init (created or running). Several execs may run,
// and start, at once. ctx is not consulted, as for Start.
func (m *Manager) Exec(ctx context.Context, id, execID string, p *specs.Process, terminal bool) (retErr error) {
	if execID == "" {
		return fmt.Errorf("exec in %s: %w: exec id is empty", id, ErrInvalid)
	}
	if err := validateProcess("process", p); err != nil {
		return fmt.Errorf("exec %s in %s: %w", execID, id, err)
	}
	lp, err := newProcess("process", p, false)
	if err != nil {
		return fmt.Errorf("exec %s in %s: %w", execID, id, err)
	}
	c, err := m.get(id)
	if err != nil {
		return fmt.Errorf("exec %s: %w", execID, err)
	}

	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		return fmt.Errorf("exec %s in %s: %w: the container is being removed", execID, id, ErrInvalidState)
	}
	if _, taken := c.execs[execID]; taken {
		c.mu.Unlock()
		return fmt.Errorf("exec %s in %s: %w", execID, id, ErrAlreadyExists)
	}
	c.execs[execID] = nil
	c.inflight.Add(1)
	c.mu.Unlock()
	defer c.inflight.Done()
	defer func() {
		if retErr != nil {
			c.mu.Lock()
			delete(c.execs, execID)
			c.mu.Unlock()
		}
	}()

	st, err := c.status()
	if err != nil {
		return fmt.Errorf("exec %s: %w", execID, err)
	}
	if st != Created && st != Running {
		return fmt.Errorf("exec %s in %s: %w: cannot exec in a %s container", execID, id, ErrInvalidState, st)
	}
	proc, err := m.startProcess(c.lc, lp, terminal)
	if err != nil {
		return fmt.Errorf("exec %s in %s: %w", execID, id, err)
	}
	c.mu.Lock()
	c.execs[execID] = proc
	c.mu.Unlock()
	return nil
}

// DeleteExec forgets an exec that has exited and closes its stdio, so that
// a long-lived container with many execs (probes) does not pile up
// descriptors. Its exit status is gone afterwards, and a reader still
// draining its output gets os.ErrClosed: call it after the output's EOF.
func (m *Manager) DeleteExec(ctx context.Context, id, execID string) error {
	if execID == "" {
		return fmt.Errorf("delete exec in %s: %w: exec id is empty (the init goes with Remove)", id, ErrInvalid)
	}
	c, err := m.get(id)
	if err != nil {
		return fmt.Errorf("delete exec %s: %w", execID, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.execs[execID]
	switch {
	case p == nil:
		return fmt.Errorf("delete exec %s in %s: %w", execID, id, ErrNotFound)
	case !p.exited():
		return fmt.Errorf("delete exec %s in %s: %w: it is still running; signal it and wait first", execID, id, ErrInvalidState)
	}
	delete(c.execs, execID)
	p.io.close()
	return nil
}
