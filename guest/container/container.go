// Package container runs the containers of one sandbox inside the guest, with
// runc's libcontainer doing namespaces, mounts, users, capabilities, rlimits
// and cgroups from the OCI spec the host sends.
//
// Every process it starts goes through the agent's reaper (guest/reaper):
// libcontainer's own Process.Wait is never called, so exit statuses come from
// the one wait loop of PID 1 and nothing else can steal them.
package container

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/joeyrt/joey/guest/reaper"
)

// Sentinels for the protocol edge to map onto status codes; errors wrap them.
var (
	// ErrNotFound: no such container or process (or it has already exited,
	// for Signal).
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: the container or exec ID is taken.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidState: the operation does not fit the container's state,
	// such as exec in a stopped container.
	ErrInvalidState = errors.New("invalid state")
	// ErrInvalid: bad input; the message names the field.
	ErrInvalid = errors.New("invalid argument")
)

// DefaultCgroupParent is the cgroup under which containers whose spec has no
// cgroupsPath get theirs.
const DefaultCgroupParent = "/joey"

// Options tune a Manager.
type Options struct {
	// NoPivotRoot enters each container's rootfs with MS_MOVE and chroot
	// instead of pivot_root. pivot_root fails with EINVAL while the agent's
	// own root is the initramfs, so the agent sets this when RootIsRamfs.
	NoPivotRoot bool
	// CgroupParent replaces DefaultCgroupParent.
	CgroupParent string
}

// ExitStatus is how a container process ended.
type ExitStatus struct {
	// Code is the exit code, or 128+n for a process killed by signal n.
	Code     int
	ExitedAt time.Time
}

// Status is a container's state as libcontainer sees it.
type Status string

// The states a container goes through.
const (
	Created Status = "created"
	Running Status = "running"
	Paused  Status = "paused"
	Stopped Status = "stopped"
)

// Manager holds every container of the sandbox. Its methods are safe for
// concurrent use.
type Manager struct {
	root   string
	reaper *reaper.Reaper
	opts   Options
	oom    chan string

	mu         sync.Mutex
	containers map[string]*ctr // guarded by mu; a nil value reserves the ID for a Create under way
	closed     bool            // guarded by mu
}

// ctr is one container.
type ctr struct {
	id   string
	lc   *libcontainer.Container
	init *proc
	// stopOOM ends the forwarding of OOM events once the container goes.
	stopOOM chan struct{}
	// inflight counts Exec calls under way, which Remove waits for.
	inflight sync.WaitGroup

	mu       sync.Mutex
	execs    map[string]*proc // guarded by mu; a nil value reserves the ID for an Exec under way
	started  bool             // guarded by mu
	removing bool             // guarded by mu
}

// NewManager returns a manager keeping libcontainer's state under stateRoot
// (created if missing) and taking exit statuses from r.
func NewManager(stateRoot string, r *reaper.Reaper, opts Options) (*Manager, error) {
	if stateRoot == "" {
		return nil, fmt.Errorf("new container manager: %w: stateRoot is empty", ErrInvalid)
	}
	if r == nil {
		return nil, fmt.Errorf("new container manager: %w: reaper is nil", ErrInvalid)
	}
	if opts.CgroupParent == "" {
		opts.CgroupParent = DefaultCgroupParent
	}
	if err := os.MkdirAll(stateRoot, 0o700); err != nil {
		return nil, fmt.Errorf("new container manager: %w", err)
	}
	return &Manager{
		root:       stateRoot,
		reaper:     r,
		opts:       opts,
		oom:        make(chan string, 16),
		containers: map[string]*ctr{},
	}, nil
}

// OOMEvents delivers the ID of a container each time the kernel's OOM killer
// acts in it. The channel is never closed. Events are dropped for a
// container once it is removed.
func (m *Manager) OOMEvents() <-chan string { return m.oom }

// get returns a created container.
func (m *Manager) get(id string) (*ctr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.containers[id]
	if c == nil {
		return nil, fmt.Errorf("container %q: %w", id, ErrNotFound)
	}
	return c, nil
}

// process returns the init ("" execID) or an exec of c.
func (c *ctr) process(execID string) (*proc, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.execs[execID]
	if p == nil {
		return nil, fmt.Errorf("exec %q in container %q: %w", execID, c.id, ErrNotFound)
	}
	return p, nil
}

func (c *ctr) status() (Status, error) {
	st, err := c.lc.Status()
	if err != nil {
		return "", fmt.Errorf("status of container %s: %w", c.id, err)
	}
	return Status(st.String()), nil
}
