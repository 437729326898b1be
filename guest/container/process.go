package container

import (
	"context"
	"fmt"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/guest/reaper"
)

// proc is one process of a container: its init or an exec.
type proc struct {
	lp   *libcontainer.Process
	pid  int
	io   *procIO
	done chan struct{} // closed once the reaper has collected the process
	exit ExitStatus    // written before done is closed
}

// startProcess starts lp in lc through the reaper, so that libcontainer's
// waits for its intermediate children see their statuses and the new pid is
// registered before it can be reaped.
func (m *Manager) startProcess(lc *libcontainer.Container, lp *libcontainer.Process, terminal bool) (_ *proc, retErr error) {
	pio, err := newProcIO(terminal)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			pio.close()
		}
	}()
	pio.attach(lp)
	exit, err := m.reaper.Start(func() (int, error) {
		if err := lc.Start(lp); err != nil {
			return 0, err
		}
		return lp.Pid()
	})
	if err != nil {
		return nil, err
	}
	p := &proc{lp: lp, io: pio, done: make(chan struct{})}
	p.pid, _ = lp.Pid()
	go p.collect(exit)
	if err := pio.started(); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

func (p *proc) collect(exit <-chan reaper.Exit) {
	e := <-exit
	p.exit = ExitStatus{Code: e.Code, ExitedAt: e.At}
	close(p.done)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends a process that must not live on, and waits for the reaper to
// collect it: SIGKILL cannot be ignored, so the wait is short.
func (p *proc) kill() {
	p.lp.Signal(unix.SIGKILL)
	<-p.done
}

func (p *proc) wait(ctx context.Context) (ExitStatus, error) {
	select {
	case <-p.done:
		return p.exit, nil
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
}

// waitAll waits until every process in ps has been collected, or ctx ends.
func waitAll(ctx context.Context, ps []*proc) error {
	for _, p := range ps {
		if _, err := p.wait(ctx); err != nil {
			return fmt.Errorf("wait for pid %d: %w", p.pid, err)
		}
	}
	return nil
}

// Wait blocks until the init ("" execID) or the exec execID of container id
// exits, and returns how it ended; after the exit it returns at once. Any
// number of callers may wait for the same process.
func (m *Manager) Wait(ctx context.Context, id, execID string) (ExitStatus, error) {
	c, err := m.get(id)
	if err != nil {
		return ExitStatus{}, fmt.Errorf("wait: %w", err)
	}
	p, err := c.process(execID)
	if err != nil {
		return ExitStatus{}, fmt.Errorf("wait: %w", err)
	}
	st, err := p.wait(ctx)
	if err != nil {
		return ExitStatus{}, fmt.Errorf("wait for %s/%s: %w", id, execID, err)
	}
	return st, nil
}

// Stdio returns the agent's ends of a process's stdio.
func (m *Manager) Stdio(id, execID string) (*IO, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, fmt.Errorf("stdio: %w", err)
	}
	p, err := c.process(execID)
	if err != nil {
		return nil, fmt.Errorf("stdio: %w", err)
	}
	return &p.io.pub, nil
}

// Resize sets the window size of a process's terminal; a process without
// one gives ErrInvalidState.
func (m *Manager) Resize(ctx context.Context, id, execID string, rows, cols uint16) error {
	c, err := m.get(id)
	if err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	p, err := c.process(execID)
	if err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	if err := p.io.resize(rows, cols); err != nil {
		return fmt.Errorf("resize %s/%s: %w", id, execID, err)
	}
	return nil
}

// Pid returns the pid, in the agent's PID namespace, of the init ("" execID)
// or exec execID of container id.
func (m *Manager) Pid(id, execID string) (int, error) {
	c, err := m.get(id)
	if err != nil {
		return 0, fmt.Errorf("pid: %w", err)
	}
	p, err := c.process(execID)
	if err != nil {
		return 0, fmt.Errorf("pid: %w", err)
	}
	return p.pid, nil
}
