package hypervisor

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
)

// Registry maps driver names to drivers. The zero value is ready to use.
type Registry struct {
	mu      sync.Mutex
	drivers map[string]Driver // guarded by mu
}

// Register adds d under d.Name(). A name can be registered once.
func (r *Registry) Register(d Driver) error {
	if d == nil {
		return errors.New("register hypervisor driver: driver is nil")
	}
	name := d.Name()
	if name == "" {
		return errors.New("register hypervisor driver: driver has an empty name")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.drivers[name]; ok {
		return fmt.Errorf("register hypervisor driver %q: %w", name, errdefs.ErrAlreadyExists)
	}
	if r.drivers == nil {
		r.drivers = map[string]Driver{}
	}
	r.drivers[name] = d
	return nil
}

// Get returns the driver registered as name.
func (r *Registry) Get(name string) (Driver, error) {
	r.mu.Lock()
	d, ok := r.drivers[name]
	r.mu.Unlock()
	if !ok {
		names := r.Names()
		known := "none"
		if len(names) > 0 {
			known = strings.Join(names, ", ")
		}
		return nil, fmt.Errorf("hypervisor %q is not registered (registered: %s): %w", name, known, errdefs.ErrNotFound)
	}
	return d, nil
}

// Names lists the registered drivers, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.drivers))
	for n := range r.drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// defaultRegistry is the process's registry: the shim and the CLI register
// the drivers they are built with at start-up.
var defaultRegistry Registry

// Register adds d to the process's registry.
func Register(d Driver) error { return defaultRegistry.Register(d) }

// Get returns a driver of the process's registry.
func Get(name string) (Driver, error) { return defaultRegistry.Get(name) }

// Names lists the drivers of the process's registry.
func Names() []string { return defaultRegistry.Names() }
