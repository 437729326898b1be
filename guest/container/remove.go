package container

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// exitTimeout bounds how long Remove waits for killed processes when its
// context has no deadline.
const exitTimeout = 10 * time.Second

// Remove kills whatever still runs in container id, waits until the reaper
// has collected its processes (bounded by ctx, or by 10 s if ctx has no
// deadline), then destroys the container (cgroup and state directory) and
// closes the agent's ends of its stdio. If it fails, the container stays
// and Remove may be called again.
func (m *Manager) Remove(ctx context.Context, id string) (retErr error) {
	c, err := m.get(id)
	if err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		return fmt.Errorf("remove %s: %w: a removal is under way", id, ErrInvalidState)
	}
	c.removing = true
	c.mu.Unlock()
	defer func() {
		if retErr != nil {
			c.mu.Lock()
			c.removing = false
			c.mu.Unlock()
		}
	}()
	// Execs that started before removing was set finish starting first, so
	// the kill below sees them.
	c.inflight.Wait()

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, exitTimeout)
		defer cancel()
	}
	procs := c.procs()
	if anyRunning(procs) {
		if err := c.signalAll(syscall.SIGKILL); err != nil {
			return fmt.Errorf("remove %s: kill: %w", id, err)
		}
	}
	if err := waitAll(ctx, procs); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	// Destroy runs the spec's poststop hooks, which libcontainer waits for
	// itself.
	if err := m.reaper.Hold(c.lc.Destroy); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	close(c.stopOOM)
	for _, p := range procs {
		p.io.close()
	}
	m.mu.Lock()
	delete(m.containers, id)
	m.mu.Unlock()
	return nil
}

// procs returns the init and every started exec.
func (c *ctr) procs() []*proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := []*proc{c.init}
	for _, p := range c.execs {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

func anyRunning(ps []*proc) bool {
	for _, p := range ps {
		if !p.exited() {
			return true
		}
	}
	return false
}

// Close removes every container (see Remove) and refuses new ones. The
// OOMEvents channel stays open. Calling Close again does nothing.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var ids []string
	for id, c := range m.containers {
		if c != nil {
			ids = append(ids, id)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, id := range ids {
		if err := m.Remove(context.Background(), id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
