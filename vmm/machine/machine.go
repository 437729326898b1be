// Package machine is a KVM virtual machine: guest RAM, vCPUs each run by
// one goroutine on a locked OS thread, the in-kernel interrupt controllers
// and timer, and the dispatch of port I/O and MMIO exits to devices. It also
// defines how a VM ends: see End and the Reason values.
package machine

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/joeyrt/joey/vmm/kvm"
	"github.com/joeyrt/joey/vmm/memory"
)

// Addresses KVM needs on Intel hosts for real-mode support: three pages of
// TSS and one identity-map page, just below the 4 GiB BIOS area and far
// above RAM and the IOAPIC/LAPIC windows.
const (
	tssAddr         = 0xfffbd000
	identityMapAddr = 0xfffbc000
)

// Config describes a machine.
type Config struct {
	// MemorySize is guest RAM in bytes (a multiple of 4 KiB, ≤ memory.Limit).
	MemorySize uint64
	// VCPUs is the number of vCPUs, at least 1.
	VCPUs int
	// IRQChip creates the in-kernel PICs, IOAPIC, local APICs and PIT, as a
	// Linux guest needs. Without it HLT exits to the VMM, which tiny test
	// guests use to end.
	IRQChip bool
	// Unhandled is called for every port or MMIO access no device claims;
	// reads return what it leaves in Access.Data (all ones by default).
	// Returning an error ends the VM as Failed. A nil Unhandled fails the
	// VM on the first such access: nothing is ignored silently.
	Unhandled func(Access) error
	// PowerOffPoll is how often a machine with IRQChip checks whether every
	// vCPU has stopped for good (see PowerOff); 0 means 100ms.
	PowerOffPoll time.Duration
	// Device is the KVM device node; "" means /dev/kvm.
	Device string
}

// Machine is one VM. New makes it, devices are added, the boot code sets up
// memory and registers, then Start runs it and Wait reports its End.
type Machine struct {
	// cfg is the configuration New was given.
	cfg Config
	// sys, vm and mem are owned and released by Close.
	sys *kvm.System
	vm  *kvm.VM
	mem *memory.Memory
	// vcpus are the vCPUs, index = APIC id.
	vcpus []*vcpu
	// ports and mmio route exits to devices.
	ports bus[PortDevice]
	mmio  bus[MMIODevice]
	// started is set by Start; a machine runs once.
	started atomic.Bool
	// halted counts vCPUs that ended on a HLT exit.
	halted atomic.Int32
	// endOnce makes the first End win; end is written once before ended
	// is closed and read only after.
	endOnce sync.Once
	end     End
	ended   chan struct{}
	// wg counts the vCPU goroutines and the power-off watcher.
	wg sync.WaitGroup
	// closeOnce makes Close idempotent.
	closeOnce sync.Once
}

// New creates the VM, its RAM and vCPUs. Nothing runs until Start.
func New(cfg Config) (_ *Machine, retErr error) {
	if cfg.VCPUs < 1 || cfg.VCPUs > 254 {
		return nil, fmt.Errorf("new machine: %d vCPUs, want 1 to 254", cfg.VCPUs)
	}
	if cfg.PowerOffPoll == 0 {
		cfg.PowerOffPoll = 100 * time.Millisecond
	}
	m := &Machine{cfg: cfg, ended: make(chan struct{})}
	defer func() {
		if retErr != nil {
			m.release()
		}
	}()
	var err error
	if m.sys, err = kvm.Open(cfg.Device); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if err := m.vm.SetTSSAddr(tssAddr); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if err := m.vm.SetIdentityMapAddr(identityMapAddr); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if cfg.IRQChip {
		if err := m.vm.CreateIRQChip(); err != nil {
			return nil, fmt.Errorf("new machine: %w", err)
		}
		if err := m.vm.CreatePIT2(); err != nil {
			return nil, fmt.Errorf("new machine: %w", err)
		}
	}
	if m.mem, err = memory.New(cfg.MemorySize); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	if err := m.vm.SetMemory(0, 0, m.mem.Host()); err != nil {
		return nil, fmt.Errorf("new machine: %w", err)
	}
	for i := range cfg.VCPUs {
		c, err := m.vm.CreateVCPU(i)
		if err != nil {
			return nil, fmt.Errorf("new machine: %w", err)
		}
		m.vcpus = append(m.vcpus, &vcpu{cpu: c, m: m, probeReply: make(chan bool, 1)})
	}
	return m, nil
}

// Memory is guest RAM.
func (m *Machine) Memory() *memory.Memory { return m.mem }

// KVM is the open /dev/kvm, for KVM_GET_SUPPORTED_CPUID.
func (m *Machine) KVM() *kvm.System { return m.sys }

// VCPUs returns the vCPUs for setting up their registers before Start.
func (m *Machine) VCPUs() []*kvm.VCPU {
	out := make([]*kvm.VCPU, len(m.vcpus))
	for i, v := range m.vcpus {
		out[i] = v.cpu
	}
	return out
}

// AddPort puts d on ports [base, base+n).
func (m *Machine) AddPort(base, n uint16, d PortDevice) error {
	if err := m.ports.add(uint64(base), uint64(n), d); err != nil {
		return fmt.Errorf("add port device at %#x: %w", base, err)
	}
	return nil
}

// AddMMIO puts d on guest physical addresses [base, base+n).
func (m *Machine) AddMMIO(base, n uint64, d MMIODevice) error {
	if base < m.mem.Size() {
		return fmt.Errorf("add MMIO device at %#x: inside guest RAM", base)
	}
	if err := m.mmio.add(base, n, d); err != nil {
		return fmt.Errorf("add MMIO device at %#x: %w", base, err)
	}
	return nil
}

// IRQLine sets interrupt line irq of the in-kernel irqchip; a device
// raises it while it has an interrupt pending.
func (m *Machine) IRQLine(irq uint32, high bool) error {
	if !m.cfg.IRQChip {
		return fmt.Errorf("irq %d: machine has no irqchip", irq)
	}
	return m.vm.IRQLine(irq, high)
}

// IOEventFD has guest writes of length bytes at MMIO address addr signal
// the eventfd fd inside KVM instead of exiting to a device (assign false
// undoes it): the vCPU goes straight back to the guest, and the device
// serves the write from its own goroutine.
func (m *Machine) IOEventFD(addr uint64, length uint32, fd int, assign bool) error {
	return m.vm.IOEventFD(addr, length, fd, assign)
}

// SignalMSI delivers a message-signalled interrupt (MSI or MSI-X) with the
// address and data the guest programmed; it needs the in-kernel irqchip.
func (m *Machine) SignalMSI(addr uint64, data uint32) error {
	if !m.cfg.IRQChip {
		return fmt.Errorf("MSI %#x/%#x: machine has no irqchip", addr, data)
	}
	return m.vm.SignalMSI(addr, data)
}

// Start runs every vCPU.
func (m *Machine) Start() error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("start machine: already started")
	}
	for _, v := range m.vcpus {
		m.wg.Add(1)
		go v.loop()
	}
	if m.cfg.IRQChip {
		m.wg.Add(1)
		go m.watchPowerOff()
	}
	return nil
}

// Finish ends the VM with e unless it has already ended; devices call it
// for resets and power-off. It does not wait for the vCPUs.
func (m *Machine) Finish(e End) {
	m.endOnce.Do(func() {
		m.end = e
		close(m.ended)
		for _, v := range m.vcpus {
			v.kick(true)
		}
	})
}

// Done is closed when the VM has ended (its vCPUs may still be leaving).
func (m *Machine) Done() <-chan struct{} { return m.ended }

// Wait blocks until the VM has ended and every goroutine of it has
// returned, then reports how it ended.
func (m *Machine) Wait() End {
	<-m.ended
	m.wg.Wait()
	return m.end
}

// Stop ends a running VM and waits for it.
func (m *Machine) Stop() End {
	m.Finish(End{Reason: Stopped})
	return m.Wait()
}

// Close stops the VM if it runs and frees vCPUs, the VM and guest RAM.
func (m *Machine) Close() error {
	var err error
	m.closeOnce.Do(func() {
		if m.started.Load() {
			m.Stop()
		}
		err = m.release()
	})
	return err
}

func (m *Machine) release() error {
	var errs []error
	for _, v := range m.vcpus {
		errs = append(errs, v.cpu.Close())
	}
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
	}
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
	}
	if m.mem != nil {
		errs = append(errs, m.mem.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close machine: %w", err)
	}
	return nil
}

// fail ends the VM as Failed with err.
func (m *Machine) fail(err error) { m.Finish(End{Reason: Failed, Err: err}) }
