package kvm

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues request on fd with arg, retrying while the kernel says EINTR
// (a Go runtime preemption signal may land during any ioctl).
func ioctl(fd int, request, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), request, arg)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return r, errno
		}
		return r, nil
	}
}

// ioctlPtr is ioctl with a pointer argument kept alive for the call.
func ioctlPtr(fd int, request uintptr, p unsafe.Pointer) error {
	_, err := ioctl(fd, request, uintptr(p))
	return err
}

// runOnce issues KVM_RUN once; EINTR is returned, not retried.
func runOnce(fd int) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ioctlRun, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// setUserMemoryRegion maps host memory mem at guest address gpa as slot.
func (vm *VM) setUserMemoryRegion(slot uint32, gpa uint64, mem []byte) error {
	if len(mem) == 0 {
		return errors.New("set user memory region: empty memory")
	}
	r := userspaceMemoryRegion{
		Slot:          slot,
		GuestPhysAddr: gpa,
		MemorySize:    uint64(len(mem)),
		UserspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))),
	}
	if err := ioctlPtr(vm.fd, ioctlSetUserMemoryRegion, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION slot %d at %#x (+%#x): %w", slot, gpa, len(mem), err)
	}
	return nil
}

// cpuidBuffer is a struct kvm_cpuid2 with room for n entries.
func cpuidBuffer(entries []CPUIDEntry) []byte {
	buf := make([]byte, 8+len(entries)*int(unsafe.Sizeof(CPUIDEntry{})))
	*(*uint32)(unsafe.Pointer(&buf[0])) = uint32(len(entries))
	if len(entries) > 0 {
		copy(buf[8:], unsafe.Slice((*byte)(unsafe.Pointer(&entries[0])), len(entries)*int(unsafe.Sizeof(CPUIDEntry{}))))
	}
	return buf
}

// cpuidEntries decodes the entries of a struct kvm_cpuid2 buffer.
func cpuidEntries(buf []byte) []CPUIDEntry {
	n := *(*uint32)(unsafe.Pointer(&buf[0]))
	out := make([]CPUIDEntry, n)
	if n > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), int(n)*int(unsafe.Sizeof(CPUIDEntry{}))), buf[8:])
	}
	return out
}

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID: every leaf KVM can
// present to a guest on this host, before any filtering for the guest.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	for n := 64; n <= 4096; n *= 2 {
		buf := cpuidBuffer(make([]CPUIDEntry, n))
		err := ioctlPtr(s.fd, ioctlGetSupportedCPUID, unsafe.Pointer(&buf[0]))
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
		}
		return cpuidEntries(buf), nil
	}
	return nil, errors.New("KVM_GET_SUPPORTED_CPUID: more than 4096 entries")
}

// SetCPUID sets the CPUID leaves the guest sees on this vCPU.
func (c *VCPU) SetCPUID(entries []CPUIDEntry) error {
	buf := cpuidBuffer(entries)
	if err := ioctlPtr(c.fd, ioctlSetCPUID2, unsafe.Pointer(&buf[0])); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2 (%d entries): %w", len(entries), err)
	}
	return nil
}

// SetMSRs writes model-specific registers; KVM reports how many it took,
// and anything short of all of them is an error naming the first refused.
func (c *VCPU) SetMSRs(msrs []MSR) error {
	if len(msrs) == 0 {
		return nil
	}
	size := int(unsafe.Sizeof(MSR{}))
	buf := make([]byte, 8+len(msrs)*size)
	*(*uint32)(unsafe.Pointer(&buf[0])) = uint32(len(msrs))
	copy(buf[8:], unsafe.Slice((*byte)(unsafe.Pointer(&msrs[0])), len(msrs)*size))
	n, err := ioctl(c.fd, ioctlSetMSRs, uintptr(unsafe.Pointer(&buf[0])))
	if err != nil {
		return fmt.Errorf("KVM_SET_MSRS: %w", err)
	}
	if int(n) != len(msrs) {
		return fmt.Errorf("KVM_SET_MSRS: KVM refused MSR %#x (set %d of %d)", msrs[n].Index, n, len(msrs))
	}
	return nil
}

// GetRegs reads the general-purpose registers.
func (c *VCPU) GetRegs() (Regs, error) {
	var r Regs
	err := ioctlPtr(c.fd, ioctlGetRegs, unsafe.Pointer(&r))
	return r, wrap("KVM_GET_REGS", err)
}

// SetRegs writes the general-purpose registers.
func (c *VCPU) SetRegs(r Regs) error {
	return wrap("KVM_SET_REGS", ioctlPtr(c.fd, ioctlSetRegs, unsafe.Pointer(&r)))
}

// GetSregs reads the segment and control registers.
func (c *VCPU) GetSregs() (Sregs, error) {
	var s Sregs
	err := ioctlPtr(c.fd, ioctlGetSregs, unsafe.Pointer(&s))
	return s, wrap("KVM_GET_SREGS", err)
}

// SetSregs writes the segment and control registers.
func (c *VCPU) SetSregs(s Sregs) error {
	return wrap("KVM_SET_SREGS", ioctlPtr(c.fd, ioctlSetSregs, unsafe.Pointer(&s)))
}

// SetFPU writes the x87/SSE state.
func (c *VCPU) SetFPU(f FPU) error {
	return wrap("KVM_SET_FPU", ioctlPtr(c.fd, ioctlSetFPU, unsafe.Pointer(&f)))
}

// GetLAPIC reads the in-kernel local APIC's register page.
func (c *VCPU) GetLAPIC() (LAPICState, error) {
	var l LAPICState
	err := ioctlPtr(c.fd, ioctlGetLAPIC, unsafe.Pointer(&l))
	return l, wrap("KVM_GET_LAPIC", err)
}

// SetLAPIC writes the in-kernel local APIC's register page.
func (c *VCPU) SetLAPIC(l LAPICState) error {
	return wrap("KVM_SET_LAPIC", ioctlPtr(c.fd, ioctlSetLAPIC, unsafe.Pointer(&l)))
}

// MPState reads the vCPU's multiprocessing state (running, halted, waiting
// for SIPI); it needs the in-kernel irqchip.
func (c *VCPU) MPState() (MPState, error) {
	var s uint32
	err := ioctlPtr(c.fd, ioctlGetMPState, unsafe.Pointer(&s))
	return MPState(s), wrap("KVM_GET_MP_STATE", err)
}

// IRQLine sets the level of an interrupt line of the in-kernel irqchip.
func (vm *VM) IRQLine(irq uint32, high bool) error {
	l := irqLevel{IRQ: irq}
	if high {
		l.Level = 1
	}
	if err := ioctlPtr(vm.fd, ioctlIRQLine, unsafe.Pointer(&l)); err != nil {
		return fmt.Errorf("KVM_IRQ_LINE %d=%d: %w", irq, l.Level, err)
	}
	return nil
}

// CreatePIT2 creates the in-kernel i8254 timer. Port 0x61's speaker bits are
// served by KVM as well (KVM_PIT_SPEAKER_DUMMY), since Linux's PIT
// calibration reads them.
func (vm *VM) CreatePIT2() error {
	cfg := pitConfig{Flags: pitSpeakerDummy}
	return wrap("KVM_CREATE_PIT2", ioctlPtr(vm.fd, ioctlCreatePIT2, unsafe.Pointer(&cfg)))
}

// SetIdentityMapAddr places the page Intel VMX needs for real mode's
// identity map; it must not overlap guest RAM or devices.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	return wrap("KVM_SET_IDENTITY_MAP_ADDR", ioctlPtr(vm.fd, ioctlSetIdentityMapAddr, unsafe.Pointer(&addr)))
}

// ErrMSIBlocked is returned by SignalMSI when the guest has the message
// blocked (masked at the local APIC): nothing was delivered.
var ErrMSIBlocked = errors.New("MSI blocked by the guest")

// SignalMSI delivers one message-signalled interrupt through KVM's
// in-kernel interrupt routing (KVM_SIGNAL_MSI): addr and data are what
// the guest programmed into the device's MSI or MSI-X entry.
func (vm *VM) SignalMSI(addr uint64, data uint32) error {
	m := msi{AddressLo: uint32(addr), AddressHi: uint32(addr >> 32), Data: data}
	var r uintptr
	var errno unix.Errno
	for {
		// The uintptr conversion stays inside the Syscall expression, so
		// m is kept alive and in place for the call.
		r, _, errno = unix.Syscall(unix.SYS_IOCTL, uintptr(vm.fd), ioctlSignalMSI, uintptr(unsafe.Pointer(&m)))
		if errno != unix.EINTR {
			break
		}
	}
	if errno != 0 {
		return fmt.Errorf("KVM_SIGNAL_MSI %#x/%#x: %w", addr, data, errno)
	}
	if r == 0 {
		return ErrMSIBlocked
	}
	return nil
}

// IOEventFD makes KVM signal the eventfd fd for every guest write of
// length bytes (1, 2, 4 or 8) at MMIO address addr, without an exit to
// this process; assign false removes that registration again.
func (vm *VM) IOEventFD(addr uint64, length uint32, fd int, assign bool) error {
	e := ioEventFD{Addr: addr, Len: length, FD: int32(fd)}
	if !assign {
		e.Flags = ioEventFDDeassign
	}
	if err := ioctlPtr(vm.fd, ioctlIOEventFD, unsafe.Pointer(&e)); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD %#x/%d (assign %v): %w", addr, length, assign, err)
	}
	return nil
}

func wrap(op string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}
