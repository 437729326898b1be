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
//   - pci: bus 0 behind configuration mechanism 1, BARs in an MMIO window,
//     MSI-X delivered through KVM_SIGNAL_MSI
//   - virtio: the transport-independent device contract and split virtqueue
//     (virtiotest: the driver side, simulated in Go, for device tests)
//   - virtio/virtiopci: the modern virtio-pci transport
//   - virtio/console, rng, blk, net, p9: the device models
//   - p9fs: the 9P2000.L server confined to one host directory
//   - vm: all of the above assembled into a bootable VM
//
// It imports nothing of the runtime (a test enforces it).
package vmm
