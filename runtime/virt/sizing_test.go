package virt

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/config"
)

func TestSizeVM(t *testing.T) {
	host := hostSize{CPUs: 8, MemoryMiB: 16384}
	cpu := func(quota int64, period uint64) *specs.LinuxResources {
		return &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}}
	}
	mem := func(limit int64) *specs.LinuxResources {
		return &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	}
	tests := []struct {
		name        string
		annotations map[string]string
		resources   *specs.LinuxResources
		edit        func(c *config.Config)
		want        vmSize
	}{
		{name: "configuration defaults", want: vmSize{VCPUs: 1, MaxVCPUs: 1, MemoryMiB: 512}},
		{name: "annotations win", annotations: map[string]string{config.AnnotationVCPUs: "2", config.AnnotationMemoryMiB: "300"},
			resources: mem(2 << 30), want: vmSize{VCPUs: 2, MaxVCPUs: 2, MemoryMiB: 300}},
		{name: "cpu quota rounds up", resources: cpu(150000, 100000), want: vmSize{VCPUs: 2, MaxVCPUs: 2, MemoryMiB: 512}},
		{name: "cpu quota capped at the host", resources: cpu(64*100000, 100000), want: vmSize{VCPUs: 8, MaxVCPUs: 8, MemoryMiB: 512}},
		{name: "unlimited cpu quota", resources: cpu(-1, 100000), want: vmSize{VCPUs: 1, MaxVCPUs: 1, MemoryMiB: 512}},
		{name: "memory limit plus overhead", resources: mem(1 << 30), want: vmSize{VCPUs: 1, MaxVCPUs: 1, MemoryMiB: 1024 + guestOverheadMiB}},
		{name: "memory limit rounds up", resources: mem(1<<30 + 1), want: vmSize{VCPUs: 1, MaxVCPUs: 1, MemoryMiB: 1025 + guestOverheadMiB}},
		{name: "small memory limit has a floor", resources: mem(16 << 20), want: vmSize{VCPUs: 1, MaxVCPUs: 1, MemoryMiB: minLimitedMemoryMiB}},
		{name: "memory limit capped at the host", resources: mem(64 << 30), want: vmSize{VCPUs: 1, MaxVCPUs: 1, MemoryMiB: 16384}},
		{name: "max vcpus kept when larger", edit: func(c *config.Config) { c.Hypervisor.QEMU.MaxVCPUs = 4 },
			want: vmSize{VCPUs: 1, MaxVCPUs: 4, MemoryMiB: 512}},
		{name: "builtin section", edit: func(c *config.Config) {
			c.Runtime.Hypervisor = config.HypervisorBuiltin
			c.Hypervisor.Builtin = config.Builtin{VCPUs: 2, MemoryMiB: 256}
		}, want: vmSize{VCPUs: 2, MaxVCPUs: 2, MemoryMiB: 256}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			if tt.edit != nil {
				tt.edit(cfg)
			}
			spec := &specs.Spec{Annotations: tt.annotations, Linux: &specs.Linux{Resources: tt.resources}}
			got, err := sizeVM(cfg, spec, host)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSizeVMRejectsBadAnnotationsNamingThem(t *testing.T) {
	host := hostSize{CPUs: 2, MemoryMiB: 4096}
	tests := []struct {
		name  string
		key   string
		value string
		edit  func(c *config.Config)
		want  string
	}{
		{"not a number", config.AnnotationVCPUs, "two", nil, `annotation io.joey.config.vcpus = "two": want a whole number of vCPUs`},
		{"zero vcpus", config.AnnotationVCPUs, "0", nil, "io.joey.config.vcpus"},
		{"negative memory", config.AnnotationMemoryMiB, "-5", nil, `io.joey.config.memory_mib = "-5"`},
		{"memory below the minimum", config.AnnotationMemoryMiB, "32", nil, "at least 64"},
		{"more cpus than the host", config.AnnotationVCPUs, "3", nil, "io.joey.config.vcpus = 3: the host has only 2 CPUs"},
		{"more memory than the host", config.AnnotationMemoryMiB, "8192", nil, "io.joey.config.memory_mib = 8192: the host has only 4096"},
		{"not allowed", config.AnnotationVCPUs, "1", func(c *config.Config) { c.Runtime.DefaultAnnotationsAllowed = nil },
			"annotation io.joey.config.vcpus is not allowed: list it in runtime.default_annotations_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			if tt.edit != nil {
				tt.edit(cfg)
			}
			spec := &specs.Spec{Annotations: map[string]string{tt.key: tt.value}}
			_, err := sizeVM(cfg, spec, host)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestMemTotal(t *testing.T) {
	kib, err := memTotalKiB([]byte("MemFree: 10 kB\nMemTotal:       24684084 kB\n"))
	if err != nil || kib != 24684084 {
		t.Fatalf("memTotalKiB = %d, %v", kib, err)
	}
	if _, err := memTotalKiB([]byte("MemFree: 10 kB\n")); err == nil {
		t.Fatal("no error without MemTotal")
	}
}
