// Package shim is joey's shim manager: the part of containerd-shim-joey-v2
// that containerd runs as a short-lived command. "start" hands containerd
// the address of the shim process serving a container's sandbox, starting
// that process unless the sandbox already has one; "delete" cleans up after
// a shim that died. The long-running process itself is containerd's shim
// library serving joey's task service (package service).
package shim

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/containerd/api/types"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/joeyrt/joey/internal/version"
)

// RuntimeName is the runtime type containerd knows joey by; containerd
// derives the binary's name, containerd-shim-joey-v2, from it.
const RuntimeName = "io.containerd.joey.v2"

// Manager implements containerd's shim.Shim for joey.
type Manager struct {
	name    string
	handler string
}

var _ cshim.Shim = (*Manager)(nil)

// New returns the manager of runtime name, whose delete command cleans up
// through the runtime handler registered as handler.
func New(name, handler string) *Manager {
	return &Manager{name: name, handler: handler}
}

// Name is the runtime type.
func (m *Manager) Name() string { return m.name }

// Info describes the shim to containerd (`ctr plugins ls`, runtime info
// requests), echoing the runtime options it was given.
func (m *Manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	info := &types.RuntimeInfo{
		Name:    m.name,
		Version: &types.RuntimeVersion{Version: version.Version},
	}
	opts, err := cshim.ReadRuntimeOptions[*runtimeoptions.Options](optionsR)
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return info, nil
	case err != nil:
		return nil, fmt.Errorf("read runtime options: joey takes runtimeoptions.v1.Options (ConfigPath): %w", err)
	}
	if info.Options, err = typeurl.MarshalAnyToProto(opts); err != nil {
		return nil, fmt.Errorf("runtime info: %w", err)
	}
	return info, nil
}

// BinaryOpts configures containerd's shim library for joey.
//
// NoReaper: the library would otherwise reap every child on SIGCHLD, racing
// exec.Cmd.Wait for the VMM's exit status; joey waits for each child it
// starts. NoSubreaper: container processes live in the VM, so nothing needs
// re-parenting to the shim, and without a reaper an adopted orphan would
// stay a zombie.
func BinaryOpts(c *cshim.Config) {
	c.NoReaper = true
	c.NoSubreaper = true
}
