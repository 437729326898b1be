package drivers

import (
	"strings"
	"testing"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/hypervisor/qemu"
)

// freshRegistry makes Register start over, as in a new process, with an
// empty registry of its own, until the test ends.
func freshRegistry(t *testing.T) *hypervisor.Registry {
	t.Helper()
	r := &hypervisor.Registry{}
	mu.Lock()
	savedRegister, savedRegistered := register, registered
	register, registered = r.Register, false
	mu.Unlock()
	t.Cleanup(func() {
		mu.Lock()
		register, registered = savedRegister, savedRegistered
		mu.Unlock()
	})
	return r
}

func TestDriversAreRegisteredFromTheSandboxConfigOnce(t *testing.T) {
	reg := freshRegistry(t)
	bad := config.Default()
	bad.Path = "/etc/joey/bad.toml"
	bad.Hypervisor.QEMU.Machine = "virt"
	if err := Register(bad); err == nil || !strings.Contains(err.Error(), "/etc/joey/bad.toml") {
		t.Fatalf("Register with a bad machine = %v, want an error naming the file", err)
	}
	if names := reg.Names(); len(names) != 0 {
		t.Fatalf("a failed registration left drivers behind: %v", names)
	}
	for i := 0; i < 2; i++ {
		if err := Register(config.Default()); err != nil {
			t.Fatalf("Register call %d: %v", i+1, err)
		}
	}
	if _, err := reg.Get(qemu.DriverName); err != nil {
		t.Fatal(err)
	}
}
