package container

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/log"
	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Create makes container id from spec and starts its init, which stops just
// before executing the user's command until Start. With terminal the
// process gets a pty, otherwise three pipes (see Stdio). Without
// spec.Linux.CgroupsPath the cgroup is <CgroupParent>/<id>. A failed Create
// leaves nothing behind. ctx carries the logger only: libcontainer's create
// cannot be abandoned half way.
func (m *Manager) Create(ctx context.Context, id string, spec *specs.Spec, terminal bool) (retErr error) {
	if err := validateID("container id", id); err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	if err := validateSpec(spec); err != nil {
		return fmt.Errorf("create container %s: %w", id, err)
	}
	cfg, err := m.newConfig(id, spec)
	if err != nil {
		return fmt.Errorf("create container %s: %w", id, err)
	}
	lp, err := newProcess("spec.process", spec.Process, true)
	if err != nil {
		return fmt.Errorf("create container %s: %w", id, err)
	}

	if err := m.reserve(id); err != nil {
		return fmt.Errorf("create container %s: %w", id, err)
	}
	defer func() {
		if retErr != nil {
			m.mu.Lock()
			delete(m.containers, id)
			m.mu.Unlock()
		}
	}()

	lc, err := libcontainer.Create(m.root, id, cfg)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			err = fmt.Errorf("%w: stale state in %s: %w", ErrAlreadyExists, m.root, err)
		}
		return fmt.Errorf("create container %s: %w", id, err)
	}
	defer func() {
		if retErr != nil {
			if err := m.reaper.Hold(lc.Destroy); err != nil {
				log.G(ctx).WithError(err).WithField("container", id).Warn("destroy after failed create")
			}
		}
	}()

	initProc, err := m.startProcess(lc, lp, terminal)
	if err != nil {
		return fmt.Errorf("create container %s: start init: %w", id, err)
	}
	defer func() {
		if retErr != nil {
			initProc.kill()
			initProc.io.close()
		}
	}()
	c := &ctr{id: id, lc: lc, init: initProc, execs: map[string]*proc{}, stopOOM: make(chan struct{})}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		// Close ran meanwhile and did not see this container.
		return fmt.Errorf("create container %s: %w: the container manager was closed", id, ErrInvalidState)
	}
	m.containers[id] = c
	m.watchOOM(ctx, c)
	return nil
}

// reserve claims id for a Create under way.
func (m *Manager) reserve(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("%w: the container manager is closed", ErrInvalidState)
	}
	if _, taken := m.containers[id]; taken {
		return fmt.Errorf("container %q: %w", id, ErrAlreadyExists)
	}
	m.containers[id] = nil
	return nil
}

// Start lets the init run the user's command. ctx is not consulted: the
// step is short and cannot be undone half way.
func (m *Manager) Start(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	c.mu.Lock()
	switch {
	case c.removing:
		c.mu.Unlock()
		return fmt.Errorf("start container %s: %w: it is being removed", id, ErrInvalidState)
	case c.started:
		c.mu.Unlock()
		return fmt.Errorf("start container %s: %w: it was started already", id, ErrInvalidState)
	}
	c.started = true
	c.mu.Unlock()
	if c.init.exited() {
		return fmt.Errorf("start container %s: %w: its init has exited", id, ErrInvalidState)
	}
	if err := c.lc.Exec(); err != nil {
		return fmt.Errorf("start container %s: %w: %w", id, ErrInvalidState, err)
	}
	return nil
}
