// Package vmm is the built-in VMM, the Dragonball analogue of DESIGN.md: a
// KVM virtual machine monitor in Go that runs inside the shim process. It
// is split by hardware concern:
//
//   - kvm: the raw KVM ioctls (system, VM, vCPU, kvm_run)
//   - memory: guest RAM with bounds-checked accessors
//   - machine: the VM, its vCPU threads, exit dispatch and how a VM ends
//   - boot: PVH loading of a stock vmlinux, start info, e820, CPU state, CPUID
//   - mptable: the MP table through which a kernel without ACPI finds CPUs
//   - serial: the i8250 console
//   - legacy: i8042 reset, 0xCF9 reset, CMOS RTC, POST port
//
// It imports nothing of the runtime (a test enforces it).
package vmm
