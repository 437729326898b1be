// Package builtin is the hypervisor driver for joey's own VMM (vmm/): the
// VM runs inside the calling process (the shim), its agent channel is an
// in-process connection and its shared filesystem is served in process, so
// no second process and no socket file exist per sandbox. It needs
// hardware KVM. Builds tagged no_builtin_vmm keep the driver's name and
// checks but leave vmm/ out: starting a VM then fails saying so.
package builtin

import (
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/internal/kvmdetect"
)

// Name is the driver's name in the registry and in runtime.hypervisor.
const Name = "builtin"

// Options configure the driver.
type Options struct {
	// Detect tells what KVM the host has; nil uses kvmdetect.Detect.
	Detect func() kvmdetect.Result
	// Device is the KVM device node; "" is /dev/kvm.
	Device string
}

// Driver starts VMs in the built-in VMM.
type Driver struct {
	opts Options
}

var _ hypervisor.Driver = (*Driver)(nil)

// New returns the driver.
func New(opts Options) *Driver {
	if opts.Detect == nil {
		opts.Detect = kvmdetect.Detect
	}
	return &Driver{opts: opts}
}

// Name implements hypervisor.Driver.
func (d *Driver) Name() string { return Name }

// usable says whether VMs can start here, and if not, why.
func (d *Driver) usable() error {
	if !Compiled {
		return fmt.Errorf("the built-in VMM is not in this build (it was built with -tags no_builtin_vmm): rebuild without the tag, or set runtime.hypervisor = \"qemu\": %w", errdefs.ErrNotImplemented)
	}
	k := d.opts.Detect()
	if !k.BootsStockKernel() {
		return fmt.Errorf("the built-in VMM needs hardware KVM (kvm_intel or kvm_amd) and this host has %s: %s; use runtime.hypervisor = \"qemu\", which falls back to TCG: %w",
			k.Kind, k.Reason, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// check refuses what the built-in VMM does not do, naming the setting.
func check(cfg *hypervisor.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	unsupported := func(format string, args ...any) error {
		return fmt.Errorf("builtin hypervisor: "+format+": %w", append(args, errdefs.ErrNotImplemented)...)
	}
	switch {
	case cfg.Accel == hypervisor.AccelTCG:
		return fmt.Errorf("builtin hypervisor: accel %q is QEMU's emulator; the built-in VMM always uses KVM: leave accel unset or use the qemu hypervisor: %w", cfg.Accel, errdefs.ErrInvalidArgument)
	case cfg.Machine != "":
		return fmt.Errorf("builtin hypervisor: machine %q is a QEMU machine type; the built-in VMM has one machine: leave it unset: %w", cfg.Machine, errdefs.ErrInvalidArgument)
	case cfg.MaxVCPUs > cfg.VCPUs:
		return unsupported("max vcpus %d > vcpus %d (vCPU hotplug)", cfg.MaxVCPUs, cfg.VCPUs)
	case cfg.HotplugSlots > 0:
		return unsupported("%d hotplug slots (device hotplug)", cfg.HotplugSlots)
	}
	for _, fs := range cfg.SharedFS {
		if fs.Kind != hypervisor.SharedFS9P {
			return unsupported("shared fs %q of kind %s (the built-in VMM serves 9p in process)", fs.Tag, fs.Kind)
		}
	}
	for _, n := range cfg.Net {
		if len(n.TapFiles) != 1 {
			return unsupported("net %s with %d TAP queues (one queue per NIC)", n.ID, len(n.TapFiles))
		}
		if len(n.VhostFiles) > 0 {
			return unsupported("net %s with vhost-net (the device model runs in process)", n.ID)
		}
	}
	return nil
}
