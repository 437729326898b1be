// Package kvmdetect tells what kind of KVM a host offers. It matters because
// a /dev/kvm backed by PVM (software nested virtualization) runs tiny guests
// but hangs a stock Linux kernel as it enters protected mode, so the runtime
// must not pick KVM just because /dev/kvm exists.
package kvmdetect

import (
	"fmt"
	"os"
	"path/filepath"
)

// Kind is the flavour of /dev/kvm on a host.
type Kind string

const (
	Hardware Kind = "hardware" // kvm_intel or kvm_amd: boots stock kernels
	PVM      Kind = "pvm"      // kvm_pvm: cannot boot a stock kernel
	Absent   Kind = "absent"   // no usable /dev/kvm
)

// Result is what Detect found and why.
type Result struct {
	Kind   Kind
	Reason string
}

// BootsStockKernel reports whether QEMU or the built-in VMM can boot an
// unpatched distribution kernel with this KVM.
func (r Result) BootsStockKernel() bool { return r.Kind == Hardware }

// Detect inspects the host's root filesystem.
func Detect() Result { return DetectAt("/") }

// DetectAt inspects a host whose /dev and /sys are under root; tests point it
// at a fake tree.
func DetectAt(root string) Result {
	dev := filepath.Join(root, "dev/kvm")
	if _, err := os.Stat(dev); err != nil {
		return Result{Absent, fmt.Sprintf("%s: %v (load kvm_intel or kvm_amd, or enable virtualization in the firmware)", "/dev/kvm", err)}
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return Result{Absent, fmt.Sprintf("open /dev/kvm: %v", err)}
	}
	f.Close()
	mod := func(name string) bool {
		_, err := os.Stat(filepath.Join(root, "sys/module", name))
		return err == nil
	}
	switch {
	case mod("kvm_pvm"):
		return Result{PVM, "/dev/kvm is provided by kvm_pvm (software nested virtualization), which cannot boot a stock kernel"}
	case mod("kvm_intel"):
		return Result{Hardware, "/dev/kvm is provided by kvm_intel"}
	case mod("kvm_amd"):
		return Result{Hardware, "/dev/kvm is provided by kvm_amd"}
	}
	return Result{Absent, "/dev/kvm exists but neither kvm_intel, kvm_amd nor kvm_pvm is loaded"}
}
