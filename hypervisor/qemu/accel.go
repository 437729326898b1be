package qemu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/hypervisor/qemu/cmdline"
	"github.com/joeyrt/joey/internal/kvmdetect"
)

// accelChoice is the accelerator a VM gets and why.
type accelChoice struct {
	kind   string // "kvm" or "tcg"
	reason string
}

// resolveAccel maps the requested accelerator onto this host. "auto" uses
// KVM only where it boots stock kernels: a PVM-backed /dev/kvm opens fine but
// hangs our guest kernel, so it must not be taken for real KVM.
func resolveAccel(want hypervisor.Accel, kvm kvmdetect.Result) (accelChoice, error) {
	switch want {
	case "", hypervisor.AccelAuto:
		if kvm.BootsStockKernel() {
			return accelChoice{"kvm", "auto: " + kvm.Reason}, nil
		}
		return accelChoice{"tcg", "auto: " + kvm.Reason + "; falling back to TCG emulation (slow)"}, nil
	case hypervisor.AccelTCG:
		return accelChoice{"tcg", "tcg requested by the configuration"}, nil
	case hypervisor.AccelKVM:
		switch kvm.Kind {
		case kvmdetect.Absent:
			return accelChoice{}, fmt.Errorf("accel kvm requested but this host has no usable KVM: %s; use accel auto or tcg", kvm.Reason)
		case kvmdetect.PVM:
			// Honoured: a kernel built for PVM guests can run. Stock ones hang.
			return accelChoice{"kvm", "kvm requested by the configuration; warning: " + kvm.Reason}, nil
		}
		return accelChoice{"kvm", "kvm requested by the configuration: " + kvm.Reason}, nil
	}
	return accelChoice{}, fmt.Errorf("accel %q is not one of auto, kvm, tcg", want)
}

// cpuFor picks the CPU model: the host's CPU under KVM; under TCG the
// richest model without 5-level paging, whose PVH boots on microvm hang in
// about half the runs (RECIPES.md).
func cpuFor(accel string) cmdline.CPU {
	if accel == "kvm" {
		return cmdline.CPU{Model: "host"}
	}
	return cmdline.CPU{Model: "max", Off: []string{"la57"}}
}

// Under TCG the guest's TSC is the host's (QEMU reads the host counter), but
// the guest kernel still calibrates it against the PIT. TCG on a busy host
// makes that calibration fail, and microvm has no HPET or ACPI PM timer to
// fall back on: the kernel marks the TSC unstable and hangs early in boot
// (7 of 8 boots with both host cores busy). Telling the kernel the rate
// skips the calibration (8 of 8 boots).
func tscParams(accel string, tscKHz int) []string {
	if accel != "tcg" || tscKHz <= 0 {
		return nil
	}
	return []string{"tsc_early_khz=" + strconv.Itoa(tscKHz)}
}

// hostTSCKHz reads the host's TSC rate from /proc/cpuinfo: with a constant
// TSC (every x86 host TCG is worth running on) "cpu MHz" is its rate.
func hostTSCKHz() (int, error) {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0, err
	}
	return parseCPUMHz(b)
}

func parseCPUMHz(cpuinfo []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 {
			return 0, fmt.Errorf("cpuinfo: bad cpu MHz %q", strings.TrimSpace(v))
		}
		return int(math.Round(mhz * 1000)), nil
	}
	return 0, errors.New("cpuinfo: no cpu MHz line")
}
