package kvm

import (
	"encoding/binary"
	"fmt"
)

// Offsets in struct kvm_run.
const (
	runImmediateExit = 1
	runExitReason    = 8
	runUnion         = 32
)

// ExitReason is kvm_run.exit_reason (KVM_EXIT_*).
type ExitReason uint32

// Exit reasons x86 KVM can return.
const (
	ExitUnknown       ExitReason = 0
	ExitException     ExitReason = 1
	ExitIO            ExitReason = 2
	ExitHypercall     ExitReason = 3
	ExitDebug         ExitReason = 4
	ExitHLT           ExitReason = 5
	ExitMMIO          ExitReason = 6
	ExitIRQWindowOpen ExitReason = 7
	ExitShutdown      ExitReason = 8
	ExitFailEntry     ExitReason = 9
	ExitIntr          ExitReason = 10
	ExitSetTPR        ExitReason = 11
	ExitTPRAccess     ExitReason = 12
	ExitNMI           ExitReason = 16
	ExitInternalError ExitReason = 17
	ExitSystemEvent   ExitReason = 24
	ExitIOAPICEOI     ExitReason = 26
	ExitHyperV        ExitReason = 27
	ExitX86RDMSR      ExitReason = 29
	ExitX86WRMSR      ExitReason = 30
	ExitDirtyRingFull ExitReason = 31
	ExitAPResetHold   ExitReason = 32
	ExitX86BusLock    ExitReason = 33
	ExitNotify        ExitReason = 37
	ExitMemoryFault   ExitReason = 39
)

var exitNames = map[ExitReason]string{
	ExitUnknown: "UNKNOWN", ExitException: "EXCEPTION", ExitIO: "IO", ExitHypercall: "HYPERCALL",
	ExitDebug: "DEBUG", ExitHLT: "HLT", ExitMMIO: "MMIO", ExitIRQWindowOpen: "IRQ_WINDOW_OPEN",
	ExitShutdown: "SHUTDOWN", ExitFailEntry: "FAIL_ENTRY", ExitIntr: "INTR", ExitSetTPR: "SET_TPR",
	ExitTPRAccess: "TPR_ACCESS", ExitNMI: "NMI", ExitInternalError: "INTERNAL_ERROR",
	ExitSystemEvent: "SYSTEM_EVENT", ExitIOAPICEOI: "IOAPIC_EOI", ExitHyperV: "HYPERV",
	ExitX86RDMSR: "X86_RDMSR", ExitX86WRMSR: "X86_WRMSR", ExitDirtyRingFull: "DIRTY_RING_FULL",
	ExitAPResetHold: "AP_RESET_HOLD", ExitX86BusLock: "X86_BUS_LOCK", ExitNotify: "NOTIFY",
	ExitMemoryFault: "MEMORY_FAULT",
}

func (r ExitReason) String() string {
	if n, ok := exitNames[r]; ok {
		return "KVM_EXIT_" + n
	}
	return fmt.Sprintf("KVM_EXIT_%d", uint32(r))
}

// System event types (kvm_run.system_event.type).
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// Run is a vCPU's mmap'ed struct kvm_run. It is read by the vCPU's own
// thread after an exit; only SetImmediateExit may be called from elsewhere,
// and callers serialise those calls.
type Run struct {
	// mem is the whole mapping, KVM_GET_VCPU_MMAP_SIZE bytes.
	mem []byte
}

func (r *Run) u32(off int) uint32 { return binary.LittleEndian.Uint32(r.mem[off:]) }
func (r *Run) u64(off int) uint64 { return binary.LittleEndian.Uint64(r.mem[off:]) }

// SetImmediateExit sets kvm_run.immediate_exit: while it is 1, KVM_RUN
// returns EINTR at once instead of entering the guest.
func (r *Run) SetImmediateExit(on bool) {
	var b byte
	if on {
		b = 1
	}
	r.mem[runImmediateExit] = b
}

// ExitReason is why the last KVM_RUN returned.
func (r *Run) ExitReason() ExitReason { return ExitReason(r.u32(runExitReason)) }

// IO describes a KVM_EXIT_IO: Count accesses of Size bytes each to Port,
// whose bytes are Data (written by the guest for an out, to be filled for
// an in).
type IO struct {
	Out   bool
	Size  int
	Port  uint16
	Count int
	Data  []byte
}

// IO decodes kvm_run.io. The data lives in the kvm_run mapping at an
// offset KVM chooses; a descriptor pointing outside the mapping is an error.
func (r *Run) IO() (IO, error) {
	io := IO{
		Out:   r.mem[runUnion] == 1,
		Size:  int(r.mem[runUnion+1]),
		Port:  binary.LittleEndian.Uint16(r.mem[runUnion+2:]),
		Count: int(r.u32(runUnion + 4)),
	}
	off := r.u64(runUnion + 8)
	n := uint64(io.Size) * uint64(io.Count)
	if io.Size == 0 || off > uint64(len(r.mem)) || n > uint64(len(r.mem))-off {
		return IO{}, fmt.Errorf("KVM_EXIT_IO port %#x: data %d×%d at offset %#x outside kvm_run", io.Port, io.Count, io.Size, off)
	}
	io.Data = r.mem[off : off+n]
	return io, nil
}

// MMIO describes a KVM_EXIT_MMIO: Data (1 to 8 bytes) written to or to be
// read from guest physical address Addr.
type MMIO struct {
	Addr  uint64
	Write bool
	Data  []byte
}

// MMIO decodes kvm_run.mmio.
func (r *Run) MMIO() (MMIO, error) {
	n := r.u32(runUnion + 16)
	if n == 0 || n > 8 {
		return MMIO{}, fmt.Errorf("KVM_EXIT_MMIO of %d bytes", n)
	}
	return MMIO{
		Addr:  r.u64(runUnion),
		Write: r.mem[runUnion+20] != 0,
		Data:  r.mem[runUnion+8 : runUnion+8+int(n)],
	}, nil
}

// SystemEvent returns kvm_run.system_event.type.
func (r *Run) SystemEvent() uint32 { return r.u32(runUnion) }

// FailEntry returns kvm_run.fail_entry.hardware_entry_failure_reason.
func (r *Run) FailEntry() uint64 { return r.u64(runUnion) }

// InternalError returns kvm_run.internal's suberror and its data words.
func (r *Run) InternalError() (suberror uint32, data []uint64) {
	n := r.u32(runUnion + 4)
	n = min(n, 16)
	for i := range n {
		data = append(data, r.u64(runUnion+8+8*int(i)))
	}
	return r.u32(runUnion), data
}
