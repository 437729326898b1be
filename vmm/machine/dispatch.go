package machine

import (
	"fmt"

	"github.com/joeyrt/joey/vmm/kvm"
)

// portIO runs one KVM_EXIT_IO, which may be a string instruction of
// io.Count accesses.
func (m *Machine) portIO(cpu int, io kvm.IO) error {
	for i := range io.Count {
		data := io.Data[i*io.Size : (i+1)*io.Size]
		dev, off, ok := m.ports.find(uint64(io.Port), uint64(io.Size))
		if !ok {
			if err := m.unhandled(Access{Addr: uint64(io.Port), Write: io.Out, Data: data, VCPU: cpu}); err != nil {
				return err
			}
			continue
		}
		var err error
		if io.Out {
			err = dev.WritePort(uint16(off), data)
		} else {
			err = dev.ReadPort(uint16(off), data)
		}
		if err != nil {
			return fmt.Errorf("port %#x: %w", io.Port, err)
		}
	}
	return nil
}

// mmioAccess runs one KVM_EXIT_MMIO.
func (m *Machine) mmioAccess(cpu int, mm kvm.MMIO) error {
	dev, off, ok := m.mmio.find(mm.Addr, uint64(len(mm.Data)))
	if !ok {
		return m.unhandled(Access{MMIO: true, Addr: mm.Addr, Write: mm.Write, Data: mm.Data, VCPU: cpu})
	}
	var err error
	if mm.Write {
		err = dev.WriteMMIO(off, mm.Data)
	} else {
		err = dev.ReadMMIO(off, mm.Data)
	}
	if err != nil {
		return fmt.Errorf("mmio %#x: %w", mm.Addr, err)
	}
	return nil
}

// unhandled reports an access no device claimed. A read sees all ones, as
// on a bus where nothing answers.
func (m *Machine) unhandled(a Access) error {
	if !a.Write {
		for i := range a.Data {
			a.Data[i] = 0xff
		}
	}
	if m.cfg.Unhandled == nil {
		return fmt.Errorf("unhandled %v", a)
	}
	if err := m.cfg.Unhandled(a); err != nil {
		return fmt.Errorf("unhandled %v: %w", a, err)
	}
	return nil
}
