package virt

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/config"
)

// How a sandbox's VM is sized. The first rule that applies wins, for vCPUs
// and memory separately:
//
//  1. An allowed annotation (io.joey.config.vcpus, io.joey.config.memory_mib)
//     is an explicit request and is taken as it is. It must be a whole
//     number, at least 1 vCPU or 64 MiB, and no more than the host has.
//  2. A limit in the spec's linux.resources sizes the VM for the workload:
//     vCPUs = ceil(cpu.quota / cpu.period); memory = the memory limit in MiB
//     (rounded up) + guestOverheadMiB for the guest's kernel, agent and page
//     cache, and at least minLimitedMemoryMiB. Both are capped at what the
//     host has: a VM bigger than its host only adds overhead.
//  3. Otherwise the configuration's [hypervisor.<driver>] vcpus and
//     memory_mib.
//
// MaxVCPUs is the configuration's max_vcpus, raised to vCPUs if smaller.
const (
	guestOverheadMiB    = 128
	minLimitedMemoryMiB = 256
	minMemoryMiB        = 64
)

// vmSize is what the VM gets.
type vmSize struct {
	VCPUs, MaxVCPUs, MemoryMiB int
}

// hostSize is what the host has; sizing never exceeds it.
type hostSize struct {
	CPUs      int
	MemoryMiB int
}

// sizeVM applies the rules above to a sandbox's spec.
func sizeVM(cfg *config.Config, spec *specs.Spec, host hostSize) (vmSize, error) {
	var sz vmSize
	switch cfg.Runtime.Hypervisor {
	case config.HypervisorBuiltin:
		sz = vmSize{VCPUs: cfg.Hypervisor.Builtin.VCPUs, MaxVCPUs: cfg.Hypervisor.Builtin.VCPUs, MemoryMiB: cfg.Hypervisor.Builtin.MemoryMiB}
	default:
		q := cfg.Hypervisor.QEMU
		sz = vmSize{VCPUs: q.VCPUs, MaxVCPUs: q.EffectiveMaxVCPUs(), MemoryMiB: q.MemoryMiB}
	}
	var res *specs.LinuxResources
	if spec.Linux != nil {
		res = spec.Linux.Resources
	}

	vcpus, ok, err := annotation(cfg, spec, config.AnnotationVCPUs, 1, host.CPUs, "vCPUs", "CPUs")
	switch {
	case err != nil:
		return vmSize{}, err
	case ok:
		sz.VCPUs = vcpus
	case res != nil && res.CPU != nil && res.CPU.Quota != nil && *res.CPU.Quota > 0 &&
		res.CPU.Period != nil && *res.CPU.Period > 0:
		q, p := uint64(*res.CPU.Quota), *res.CPU.Period
		sz.VCPUs = int(min((q+p-1)/p, uint64(host.CPUs)))
	}

	mem, ok, err := annotation(cfg, spec, config.AnnotationMemoryMiB, minMemoryMiB, host.MemoryMiB, "MiB", "MiB of memory")
	switch {
	case err != nil:
		return vmSize{}, err
	case ok:
		sz.MemoryMiB = mem
	case res != nil && res.Memory != nil && res.Memory.Limit != nil && *res.Memory.Limit > 0:
		limit := (uint64(*res.Memory.Limit) + (1<<20 - 1)) >> 20
		want := max(limit+guestOverheadMiB, minLimitedMemoryMiB)
		sz.MemoryMiB = int(min(want, uint64(host.MemoryMiB)))
	}
	sz.MaxVCPUs = max(sz.MaxVCPUs, sz.VCPUs)
	return sz, nil
}

// annotation reads an integer resource annotation: ok is false when the
// spec does not have it.
func annotation(cfg *config.Config, spec *specs.Spec, key string, lo, hostHas int, unit, hostUnit string) (int, bool, error) {
	v, present := spec.Annotations[key]
	if !present {
		return 0, false, nil
	}
	if !cfg.AnnotationAllowed(key) {
		return 0, false, fmt.Errorf("annotation %s is not allowed: list it in runtime.default_annotations_allowed of %s to let pods size their VM",
			key, configName(cfg))
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo {
		return 0, false, fmt.Errorf("annotation %s = %q: want a whole number of %s, at least %d", key, v, unit, lo)
	}
	if hostHas > 0 && n > hostHas {
		return 0, false, fmt.Errorf("annotation %s = %d: the host has only %d %s", key, n, hostHas, hostUnit)
	}
	return n, true, nil
}

func configName(cfg *config.Config) string {
	if cfg.Path == "" {
		return "the configuration file (" + config.DefaultPath + ")"
	}
	return cfg.Path
}

// thisHost measures the host: the CPUs this process may run on and the
// memory the kernel reports.
func thisHost() (hostSize, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return hostSize{}, fmt.Errorf("host memory: %w", err)
	}
	kib, err := memTotalKiB(data)
	if err != nil {
		return hostSize{}, fmt.Errorf("host memory: %w", err)
	}
	return hostSize{CPUs: goruntime.NumCPU(), MemoryMiB: int(kib >> 10)}, nil
}

func memTotalKiB(meminfo []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		var kib uint64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kib); n == 1 {
			return kib, nil
		}
	}
	return 0, fmt.Errorf("no MemTotal line in /proc/meminfo")
}
