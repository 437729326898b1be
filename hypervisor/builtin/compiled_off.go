//go:build no_builtin_vmm

package builtin

import (
	"context"

	"github.com/joeyrt/joey/hypervisor"
)

// Compiled says the built-in VMM is part of this build: not with the
// no_builtin_vmm tag.
const Compiled = false

// Capabilities implements hypervisor.Driver: it fails, naming the tag.
func (d *Driver) Capabilities(context.Context) (hypervisor.Capabilities, error) {
	return hypervisor.Capabilities{}, d.usable()
}

// Start implements hypervisor.Driver: it always fails, naming the tag.
func (d *Driver) Start(_ context.Context, cfg *hypervisor.Config) (hypervisor.VM, error) {
	cfg.CloseFiles()
	return nil, d.usable()
}
