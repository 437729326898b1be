package kvm

// ioctl request numbers from <linux/kvm.h> (KVMIO = 0xAE), x86-64 sizes.
const (
	ioctlGetAPIVersion       = 0xAE00
	ioctlCreateVM            = 0xAE01
	ioctlCheckExtension      = 0xAE03
	ioctlGetVCPUMmapSize     = 0xAE04
	ioctlGetSupportedCPUID   = 0xC008AE05
	ioctlCreateVCPU          = 0xAE41
	ioctlSetUserMemoryRegion = 0x4020AE46
	ioctlSetTSSAddr          = 0xAE47
	ioctlSetIdentityMapAddr  = 0x4008AE48
	ioctlCreateIRQChip       = 0xAE60
	ioctlIRQLine             = 0x4008AE61
	ioctlCreatePIT2          = 0x4040AE77
	ioctlRun                 = 0xAE80
	ioctlGetRegs             = 0x8090AE81
	ioctlSetRegs             = 0x4090AE82
	ioctlGetSregs            = 0x8138AE83
	ioctlSetSregs            = 0x4138AE84
	ioctlSetMSRs             = 0x4008AE89
	ioctlSetFPU              = 0x41A0AE8D
	ioctlGetLAPIC            = 0x8400AE8E
	ioctlSetLAPIC            = 0x4400AE8F
	ioctlSetCPUID2           = 0x4008AE90
	ioctlGetMPState          = 0x8004AE98
	ioctlSignalMSI           = 0x4020AEA5
	ioctlIOEventFD           = 0x4040AE79
)

const pitSpeakerDummy = 1

// Regs is struct kvm_regs.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// Segment is struct kvm_segment: a segment register with its hidden part.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable is struct kvm_dtable: a GDTR or IDTR.
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs.
type Sregs struct {
	CS, DS, ES, FS, GS, SS  Segment
	TR, LDT                 Segment
	GDT, IDT                DTable
	CR0, CR2, CR3, CR4, CR8 uint64
	EFER                    uint64
	APICBase                uint64
	InterruptBitmap         [4]uint64
}

// FPU is struct kvm_fpu.
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// LAPICState is struct kvm_lapic_state: the local APIC's 1 KiB register page.
type LAPICState struct {
	Regs [1024]byte
}

// CPUIDEntry is struct kvm_cpuid_entry2.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUIDFlagSignificantIndex marks a leaf whose sub-leaf (ECX) matters.
const CPUIDFlagSignificantIndex = 1

// MSR is struct kvm_msr_entry.
type MSR struct {
	Index uint32
	_     uint32
	Data  uint64
}

// MPState is a vCPU's multiprocessing state (KVM_MP_STATE_*).
type MPState uint32

// The states a stopped or running x86 vCPU can be in.
const (
	MPStateRunnable      MPState = 0
	MPStateUninitialized MPState = 1
	MPStateInitReceived  MPState = 2
	MPStateHalted        MPState = 3
	MPStateSIPIReceived  MPState = 4
)

type userspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

type irqLevel struct {
	IRQ   uint32
	Level uint32
}

type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

// msi is struct kvm_msi.
// ioEventFD is struct kvm_ioeventfd.
type ioEventFD struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]byte
}

const ioEventFDDeassign = 1 << 2

type msi struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	_         [12]byte
}
