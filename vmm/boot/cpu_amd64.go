package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/joeyrt/joey/vmm/kvm"
)

// GDT selectors of the flat 32-bit segments PVH enters with.
const (
	selCode = 0x08
	selData = 0x10
	selTSS  = 0x18
)

// gdt holds a null descriptor, flat 4 GiB code and data, and a TSS. The
// kernel loads its own GDT at once; this one makes the hidden segment state
// KVM is given consistent with what a descriptor load would produce.
var gdt = []uint64{
	0,
	0x00cf9b000000ffff, // code: base 0, limit 4 GiB, execute/read, accessed, 32-bit
	0x00cf93000000ffff, // data: base 0, limit 4 GiB, read/write, accessed, 32-bit
	0x00008b0000000067, // TSS: base 0, limit 0x67, busy 32-bit TSS
}

// WriteGDT puts the boot GDT in guest memory.
func WriteGDT(mem Memory) error {
	b := make([]byte, 8*len(gdt))
	for i, d := range gdt {
		binary.LittleEndian.PutUint64(b[8*i:], d)
	}
	if err := mem.WriteAt(b, gdtAddr); err != nil {
		return fmt.Errorf("write GDT: %w", err)
	}
	return nil
}

// pvhSregs turns s into the PVH entry state: protected mode, paging off,
// flat segments from the GDT, CR4 and EFER clear.
func pvhSregs(s kvm.Sregs) kvm.Sregs {
	code := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: selCode, Type: 0xb, Present: 1, DB: 1, S: 1, G: 1}
	data := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: selData, Type: 0x3, Present: 1, DB: 1, S: 1, G: 1}
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = kvm.Segment{Base: 0, Limit: 0x67, Selector: selTSS, Type: 0xb, Present: 1}
	s.GDT = kvm.DTable{Base: gdtAddr, Limit: uint16(8*len(gdt) - 1)}
	s.IDT = kvm.DTable{}
	const cr0PE, cr0ET = 1 << 0, 1 << 4
	s.CR0 = cr0PE | cr0ET
	s.CR3, s.CR4, s.EFER = 0, 0, 0
	return s
}

// MSR numbers set at boot.
const (
	msrMiscEnable  = 0x1a0
	msrMTRRDefType = 0x2ff
)

// bootMSRs: fast strings enabled (what firmware leaves), and MTRRs on with
// write-back as the default type, without which Linux would map all RAM
// uncached.
var bootMSRs = []kvm.MSR{
	{Index: msrMiscEnable, Data: 1},
	{Index: msrMTRRDefType, Data: 1<<11 | 6},
}

// Local APIC register offsets and delivery modes for LINT0/LINT1.
const (
	lapicLVT0    = 0x350
	lapicLVT1    = 0x360
	deliveryMask = 0x700
	extINT       = 0x700
	nmi          = 0x400
)

// setLINT wires LINT0 to the 8259 (ExtINT) and LINT1 to NMI, as the MP
// table says and as firmware does.
func setLINT(c *kvm.VCPU) error {
	l, err := c.GetLAPIC()
	if err != nil {
		return err
	}
	for _, r := range []struct {
		off  int
		mode uint32
	}{{lapicLVT0, extINT}, {lapicLVT1, nmi}} {
		v := binary.LittleEndian.Uint32(l.Regs[r.off:])
		binary.LittleEndian.PutUint32(l.Regs[r.off:], v&^deliveryMask|r.mode)
	}
	return c.SetLAPIC(l)
}

// VCPUConfig is what SetupVCPUs needs besides the vCPUs.
type VCPUConfig struct {
	// Supported is KVM_GET_SUPPORTED_CPUID, filtered per vCPU by GuestCPUID.
	Supported []kvm.CPUIDEntry
	// Entry and StartInfo are the PVH entry point and hvm_start_info.
	Entry, StartInfo uint64
	// LAPIC says the in-kernel irqchip exists, so LINT0/1 are set up.
	LAPIC bool
}

// SetupVCPUs gives every vCPU its CPUID, MSRs and FPU state, and the BSP
// (vCPU 0) the PVH entry state. The APs stay in wait-for-SIPI: the kernel
// starts them through its local APIC.
func SetupVCPUs(cpus []*kvm.VCPU, cfg VCPUConfig) error {
	for _, c := range cpus {
		if err := c.SetCPUID(GuestCPUID(cfg.Supported, c.ID, len(cpus))); err != nil {
			return fmt.Errorf("vCPU %d: %w", c.ID, err)
		}
		if err := c.SetMSRs(bootMSRs); err != nil {
			return fmt.Errorf("vCPU %d: %w", c.ID, err)
		}
		if err := c.SetFPU(kvm.FPU{FCW: 0x37f, MXCSR: 0x1f80}); err != nil {
			return fmt.Errorf("vCPU %d: %w", c.ID, err)
		}
		if cfg.LAPIC {
			if err := setLINT(c); err != nil {
				return fmt.Errorf("vCPU %d: %w", c.ID, err)
			}
		}
	}
	bsp := cpus[0]
	s, err := bsp.GetSregs()
	if err != nil {
		return fmt.Errorf("vCPU 0: %w", err)
	}
	if err := bsp.SetSregs(pvhSregs(s)); err != nil {
		return fmt.Errorf("vCPU 0: %w", err)
	}
	if err := bsp.SetRegs(kvm.Regs{RIP: cfg.Entry, RBX: cfg.StartInfo, RFLAGS: 2}); err != nil {
		return fmt.Errorf("vCPU 0: %w", err)
	}
	return nil
}
