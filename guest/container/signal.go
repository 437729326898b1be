package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Signal sends sig to the init ("" execID) or to exec execID of container
// id; with all, to every process in the container's cgroup instead
// (execID is then ignored). A process that has already exited gives
// ErrNotFound, as containerd expects.
func (m *Manager) Signal(ctx context.Context, id, execID string, sig syscall.Signal, all bool) error {
	if sig <= 0 || sig > 64 {
		return fmt.Errorf("signal %s/%s: %w: signal %d is out of range 1..64", id, execID, ErrInvalid, sig)
	}
	c, err := m.get(id)
	if err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	if all {
		if err := c.signalAll(sig); err != nil {
			return fmt.Errorf("signal %d to all of %s: %w", sig, id, err)
		}
		return nil
	}
	p, err := c.process(execID)
	if err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	if p.exited() {
		return fmt.Errorf("signal %d to %s/%s: %w: the process has exited", sig, id, execID, ErrNotFound)
	}
	if execID == "" {
		// libcontainer's own Signal also thaws a paused container for
		// SIGKILL and kills the whole cgroup without a PID namespace.
		err = c.lc.Signal(sig)
	} else {
		// pidfd-based: a recycled pid is never hit.
		err = p.lp.Signal(sig)
	}
	if errors.Is(err, libcontainer.ErrNotRunning) || errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %d to %s/%s: %w: the process has exited", sig, id, execID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("signal %d to %s/%s: %w", sig, id, execID, err)
	}
	return nil
}

// signalAll signals every process of the container's cgroup. The cgroup is
// frozen meanwhile, so that nothing forks out of the list, unless the
// user paused it; a paused container is thawed for SIGKILL, since frozen
// processes do not die.
func (c *ctr) signalAll(sig syscall.Signal) error {
	st, err := c.status()
	if err != nil {
		return err
	}
	if st == Created || st == Running {
		if err := c.lc.Pause(); err == nil {
			defer c.lc.Resume()
		}
	}
	pids, err := c.lc.Processes()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("kill %d: %w", pid, err)
		}
	}
	if st == Paused && sig == unix.SIGKILL {
		if err := c.lc.Resume(); err != nil {
			return fmt.Errorf("thaw to let SIGKILL work: %w", err)
		}
	}
	return nil
}
