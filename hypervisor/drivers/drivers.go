// Package drivers registers the hypervisor drivers a binary is built with,
// set up from joey's configuration. The shim and `joey run` both call it, so
// a driver is configured the same way whichever front end starts the VM.
package drivers

import (
	"fmt"
	"sync"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/hypervisor/builtin"
	"github.com/joeyrt/joey/hypervisor/qemu"
)

var (
	mu         sync.Mutex
	registered bool // guarded by mu
	// register adds a driver to the process's registry; guarded by mu.
	// Tests point it at a registry of their own.
	register = hypervisor.Register
)

// Register registers every driver from cfg's sections. A process serves one
// configuration, so later calls do nothing.
func Register(cfg *config.Config) error {
	mu.Lock()
	defer mu.Unlock()
	if registered {
		return nil
	}
	q := cfg.Hypervisor.QEMU
	d, err := qemu.New(qemu.Options{Binary: q.Path, Machine: q.Machine})
	if err != nil {
		return fmt.Errorf("hypervisor.qemu in %s: %w", source(cfg), err)
	}
	if err := register(d); err != nil {
		return err
	}
	// Registered in every build: without the VMM compiled in (the
	// no_builtin_vmm tag) selecting it fails with an error naming the tag
	// rather than "not registered".
	if err := register(builtin.New(builtin.Options{})); err != nil {
		return err
	}
	registered = true
	return nil
}

func source(cfg *config.Config) string {
	if cfg.Path == "" {
		return "the default configuration"
	}
	return cfg.Path
}
