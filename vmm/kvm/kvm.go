package kvm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// apiVersion is the only KVM API version Linux has ever shipped.
const apiVersion = 12

// Capabilities (KVM_CAP_*) the VMM checks before relying on them.
const (
	CapIRQChip       = 0
	CapHLT           = 1
	CapUserMemory    = 3
	CapSetTSSAddr    = 4
	CapPIT2          = 33
	CapImmediateExit = 136
)

// System is an open /dev/kvm.
type System struct {
	// fd is the /dev/kvm descriptor; owned, closed by Close.
	fd int
	// runSize is the size of each vCPU's kvm_run mapping.
	runSize int
}

// Open opens /dev/kvm (or path) and checks the API version and the
// capabilities every VM needs.
func Open(path string) (*System, error) {
	if path == "" {
		path = "/dev/kvm"
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &System{fd: fd}
	v, err := ioctl(fd, ioctlGetAPIVersion, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	if v != apiVersion {
		s.Close()
		return nil, fmt.Errorf("%s speaks KVM API %d, want %d", path, v, apiVersion)
	}
	for _, c := range []uintptr{CapUserMemory, CapImmediateExit} {
		if !s.Has(c) {
			s.Close()
			return nil, fmt.Errorf("%s lacks KVM capability %d", path, c)
		}
	}
	n, err := ioctl(fd, ioctlGetVCPUMmapSize, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	s.runSize = int(n)
	return s, nil
}

// Has reports whether KVM has capability c (KVM_CHECK_EXTENSION > 0).
func (s *System) Has(c uintptr) bool {
	n, err := ioctl(s.fd, ioctlCheckExtension, c)
	return err == nil && n > 0
}

// Close closes /dev/kvm; VMs made from it stay valid.
func (s *System) Close() error {
	return os.NewSyscallError("close", unix.Close(s.fd))
}

// VM is one KVM virtual machine.
type VM struct {
	// fd is the VM descriptor; owned, closed by Close.
	fd int
	// runSize is copied from the System for CreateVCPU.
	runSize int
}

// CreateVM makes an empty VM.
func (s *System) CreateVM() (*VM, error) {
	fd, err := ioctl(s.fd, ioctlCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	unix.CloseOnExec(int(fd))
	return &VM{fd: int(fd), runSize: s.runSize}, nil
}

// SetMemory maps mem into the guest at gpa as memory slot slot.
func (vm *VM) SetMemory(slot uint32, gpa uint64, mem []byte) error {
	return vm.setUserMemoryRegion(slot, gpa, mem)
}

// SetTSSAddr places the three pages Intel VMX needs for real-mode emulation.
func (vm *VM) SetTSSAddr(addr uint32) error {
	_, err := ioctl(vm.fd, ioctlSetTSSAddr, uintptr(addr))
	return wrap("KVM_SET_TSS_ADDR", err)
}

// CreateIRQChip creates the in-kernel PIC pair, IOAPIC and per-vCPU local
// APICs. It must precede CreateVCPU.
func (vm *VM) CreateIRQChip() error {
	_, err := ioctl(vm.fd, ioctlCreateIRQChip, 0)
	return wrap("KVM_CREATE_IRQCHIP", err)
}

// Close closes the VM descriptor; the kernel frees the VM once its vCPUs
// are closed too.
func (vm *VM) Close() error {
	return os.NewSyscallError("close", unix.Close(vm.fd))
}

// VCPU is one virtual CPU and its shared kvm_run page.
type VCPU struct {
	// ID is the vCPU index, which is also its initial APIC id.
	ID int
	// fd is the vCPU descriptor; owned, closed by Close.
	fd int
	// run is the mmap'ed struct kvm_run.
	run Run
}

// CreateVCPU makes vCPU id and maps its kvm_run page.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctl(vm.fd, ioctlCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	unix.CloseOnExec(int(fd))
	mem, err := unix.Mmap(int(fd), 0, vm.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("mmap kvm_run of vCPU %d: %w", id, err)
	}
	return &VCPU{ID: id, fd: int(fd), run: Run{mem: mem}}, nil
}

// Run returns the vCPU's kvm_run page.
func (c *VCPU) Run() *Run { return &c.run }

// Enter runs the guest until the next exit. An interrupted run
// (a signal or immediate_exit) returns unix.EINTR.
func (c *VCPU) Enter() error { return runOnce(c.fd) }

// Close unmaps kvm_run and closes the vCPU.
func (c *VCPU) Close() error {
	err := unix.Munmap(c.run.mem)
	if cerr := unix.Close(c.fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close vCPU %d: %w", c.ID, err)
	}
	return nil
}
