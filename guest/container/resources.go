package container

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Status returns the state of container id.
func (m *Manager) Status(id string) (Status, error) {
	c, err := m.get(id)
	if err != nil {
		return "", fmt.Errorf("status: %w", err)
	}
	return c.status()
}

// Pause freezes every process of container id.
func (m *Manager) Pause(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	if err := c.lc.Pause(); err != nil {
		return fmt.Errorf("pause %s: %w", id, stateError(err))
	}
	return nil
}

// Resume thaws a paused container.
func (m *Manager) Resume(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if err := c.lc.Resume(); err != nil {
		return fmt.Errorf("resume %s: %w", id, stateError(err))
	}
	return nil
}

// stateError marks libcontainer's wrong-state errors with ErrInvalidState.
func stateError(err error) error {
	for _, e := range []error{libcontainer.ErrNotRunning, libcontainer.ErrNotPaused, libcontainer.ErrPaused, libcontainer.ErrRunning} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", ErrInvalidState, err)
		}
	}
	return err
}

// Update changes the cgroup limits of container id. Only what r sets
// changes; device rules cannot be updated and are ignored.
func (m *Manager) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	if r == nil {
		return fmt.Errorf("update %s: %w: resources are nil", id, ErrInvalid)
	}
	c, err := m.get(id)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	upd, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{Spec: &specs.Spec{Linux: &specs.Linux{Resources: r}}}, nil)
	if err != nil {
		return fmt.Errorf("update %s: %w: resources: %w", id, ErrInvalid, err)
	}
	cfg := c.lc.Config()
	cg := *cfg.Cgroups
	cg.Resources = mergeResources(cfg.Cgroups.Resources, upd.Resources)
	cfg.Cgroups = &cg
	if err := c.lc.Set(cfg); err != nil {
		return fmt.Errorf("update %s: %w", id, stateError(err))
	}
	return nil
}

// mergeResources returns old with every field that upd sets in its place.
// A zero field means "leave as is" both in an OCI update and to
// libcontainer's cgroup managers, so the merge needs no list of fields.
func mergeResources(old, upd *cgroups.Resources) *cgroups.Resources {
	merged := *old
	mv := reflect.ValueOf(&merged).Elem()
	uv := reflect.ValueOf(upd).Elem()
	for i := range uv.NumField() {
		if uv.Type().Field(i).Name == "Devices" {
			continue
		}
		if f := uv.Field(i); !f.IsZero() {
			mv.Field(i).Set(f)
		}
	}
	return &merged
}

// Processes lists the pids (in the agent's PID namespace) of every process
// in container id's cgroup.
func (m *Manager) Processes(ctx context.Context, id string) ([]int, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, fmt.Errorf("processes: %w", err)
	}
	pids, err := c.lc.Processes()
	if err != nil {
		return nil, fmt.Errorf("processes of %s: %w", id, err)
	}
	return pids, nil
}

// Stats returns container id's cgroup figures; on cgroup v2 (the guest)
// libcontainer fills the fields from the v2 files.
func (m *Manager) Stats(ctx context.Context, id string) (*cgroups.Stats, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	st, err := c.lc.Stats()
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", id, err)
	}
	return st.CgroupStats, nil
}
