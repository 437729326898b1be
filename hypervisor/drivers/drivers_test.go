package drivers

import (
	"strings"
	"testing"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/hypervisor/qemu"
)

func TestDriversAreRegisteredFromTheSandboxConfigOnce(t *testing.T) {
	bad := config.Default()
	bad.Path = "/etc/joey/bad.toml"
	bad.Hypervisor.QEMU.Machine = "virt"
	if err := Register(bad); err == nil || !strings.Contains(err.Error(), "/etc/joey/bad.toml") {
		t.Fatalf("Register with a bad machine = %v, want an error naming the file", err)
	}
	if _, err := hypervisor.Get(qemu.DriverName); err == nil {
		t.Fatal("a failed registration left a driver behind")
	}
	for i := 0; i < 2; i++ {
		if err := Register(config.Default()); err != nil {
			t.Fatalf("Register call %d: %v", i+1, err)
		}
	}
	if _, err := hypervisor.Get(qemu.DriverName); err != nil {
		t.Fatal(err)
	}
}
