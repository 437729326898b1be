//go:build !no_builtin_vmm

package builtin

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/internal/kvmdetect"
)

func TestStartRefusesWhatTheBuiltinVMMDoesNotDoNamingTheSetting(t *testing.T) {
	tap, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		edit   func(c *hypervisor.Config)
		want   string
		target error
	}{
		{"tcg", func(c *hypervisor.Config) { c.Accel = hypervisor.AccelTCG }, "accel", errdefs.ErrInvalidArgument},
		{"qemu machine", func(c *hypervisor.Config) { c.Machine = "q35" }, "machine", errdefs.ErrInvalidArgument},
		{"vcpu hotplug", func(c *hypervisor.Config) { c.MaxVCPUs = 4 }, "max vcpus", errdefs.ErrNotImplemented},
		{"device hotplug", func(c *hypervisor.Config) { c.HotplugSlots = 2 }, "hotplug", errdefs.ErrNotImplemented},
		{"virtio-fs", func(c *hypervisor.Config) {
			c.SharedMemory = true
			c.SharedFS = []hypervisor.SharedFS{{Tag: "fs", Kind: hypervisor.SharedFSVirtioFS, Socket: "/run/fs.sock"}}
		}, "virtio-fs", errdefs.ErrNotImplemented},
		{"multi-queue net", func(c *hypervisor.Config) {
			c.Net = []hypervisor.NetDevice{{ID: "eth0", TapFiles: []*os.File{tap, tap}, MAC: []byte{2, 0, 0, 0, 0, 1}}}
		}, "TAP queues", errdefs.ErrNotImplemented},
		{"bad config", func(c *hypervisor.Config) { c.VCPUs = 0 }, "vcpus", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig(t)
			tc.edit(cfg)
			d := New(Options{Detect: fakeKVM(kvmdetect.Hardware), Device: "/nonexistent/kvm"})
			_, err := d.Start(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v, want an error naming %q", err, tc.want)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Fatalf("Start = %v, want %v", err, tc.target)
			}
			if _, err := os.Stat(cfg.StateDir); !os.IsNotExist(err) {
				t.Fatalf("state dir left behind: %v", err)
			}
		})
	}
}

func TestStartNeedsHardwareKVMAndSaysWhy(t *testing.T) {
	for _, kind := range []kvmdetect.Kind{kvmdetect.PVM, kvmdetect.Absent} {
		t.Run(string(kind), func(t *testing.T) {
			d := New(Options{Detect: fakeKVM(kind)})
			cfg := validConfig(t)
			_, err := d.Start(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), "hardware KVM") || !strings.Contains(err.Error(), string(kind)) ||
				!strings.Contains(err.Error(), "qemu") {
				t.Fatalf("Start = %v, want an error naming hardware KVM, %s and the qemu alternative", err, kind)
			}
			if _, err := d.Capabilities(context.Background()); err == nil {
				t.Fatal("Capabilities succeeded on a host that cannot run the VMM")
			}
			if _, err := os.Stat(cfg.StateDir); !os.IsNotExist(err) {
				t.Fatalf("state dir left behind: %v", err)
			}
		})
	}
}

func TestFailedStartLeavesNothingBehind(t *testing.T) {
	// A kernel that does not exist fails after the state dir was made:
	// it must go again, and the TAP handed over must be closed.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg := validConfig(t)
	cfg.Net = []hypervisor.NetDevice{{ID: "eth0", TapFiles: []*os.File{w}, MAC: []byte{2, 0, 0, 0, 0, 1}}}
	d := New(Options{Detect: fakeKVM(kvmdetect.Hardware), Device: "/nonexistent/kvm"})
	if _, err := d.Start(context.Background(), cfg); err == nil {
		t.Fatal("Start with no KVM device succeeded")
	}
	if _, err := os.Stat(cfg.StateDir); !os.IsNotExist(err) {
		t.Fatalf("state dir left behind: %v", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("TAP file still open after a failed Start (write: %v)", err)
	}
}

// TestBuildWithoutVMM builds with -tags no_builtin_vmm: the shim and joey
// then contain nothing of vmm/, and this package's tagged test proves
// that selecting the driver fails naming the tag.
func TestBuildWithoutVMM(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-deps", "-tags", "no_builtin_vmm",
		"github.com/joeyrt/joey/cmd/containerd-shim-joey-v2", "github.com/joeyrt/joey/cmd/joey").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list printed too little to check: %q", out)
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "github.com/joeyrt/joey/vmm/") || p == "github.com/joeyrt/joey/vmm" {
			t.Errorf("the no_builtin_vmm build still depends on %s", p)
		}
	}
	out, err = exec.Command(goBin, "list", "-deps", "github.com/joeyrt/joey/cmd/containerd-shim-joey-v2").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "github.com/joeyrt/joey/vmm/vm\n") {
		t.Fatalf("the default build of the shim does not include vmm/vm (%v)", err)
	}
	cmd := exec.Command(goBin, "test", "-count=1", "-tags", "no_builtin_vmm", "-run", "^TestTaggedBuild", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("tagged test: %v\n%s", err, out)
	}
}
