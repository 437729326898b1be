package boot

import (
	"math/bits"

	"github.com/joeyrt/joey/vmm/kvm"
)

// CPUID feature bits the guest must not see or must see.
const (
	leaf1ECXVMX        = 1 << 5
	leaf1ECXHypervisor = 1 << 31
	leaf1EDXHTT        = 1 << 28
	leaf7ECXLA57       = 1 << 16
	leaf7ECXPKU        = 1 << 3
	leaf7ECXOSPKE      = 1 << 4
	// Features whose state lives in XSAVE components above SSE.
	leaf1ECXAVXFamily = 1<<12 | 1<<28 | 1<<29                                                // FMA, AVX, F16C
	leaf7EBXAVXFamily = 1<<5 | 1<<16 | 1<<17 | 1<<21 | 1<<26 | 1<<27 | 1<<28 | 1<<30 | 1<<31 // AVX2, AVX-512
	leaf7ECXAVXFamily = 1<<1 | 1<<6 | 1<<9 | 1<<10 | 1<<11 | 1<<12 | 1<<14                   // AVX-512 VBMI…, VAES, VPCLMULQDQ
	leaf7EDXAVXFamily = 1<<2 | 1<<3 | 1<<8 | 1<<22 | 1<<23 | 1<<24 | 1<<25                   // AVX-512 4VNNIW…, AMX
	leaf71EAXAVX      = 1<<4 | 1<<5                                                          // AVX-VNNI, AVX512-BF16
	leaf7EBXFSGSBASE  = 1 << 0
	leaf1ECXXSAVE     = 1<<26 | 1<<27 // XSAVE, OSXSAVE
	ext1ECXSVM        = 1 << 2
)

// GuestCPUID derives vCPU id's CPUID (of cpus vCPUs) from what KVM
// supports: the hypervisor bit set (so the kernel looks for KVM's
// paravirtual clock), no VMX/SVM (no nesting inside our guests), no
// 5-level paging (whose PVH boots hang under the nested setups we test on),
// no architectural PMU, no XSAVE (see below), and the topology leaves
// carrying this vCPU's APIC id with one thread per core and cpus cores in
// one package.
//
// Why no XSAVE: KVM sizes the XSAVE area it reports in CPUID 0xD.0 EBX
// from the XCR0 it sees the guest set with XSETBV. Under nested SVM as
// QEMU TCG emulates it, that bookkeeping goes wrong: the guest kernel
// reports "XSAVE consistency problem: size 2696 != kernel_size 576" and
// then corrupts memory (page-fault recursions in boot), and with XCR0
// limited to x87|SSE its XRSTOR of signal frames fails instead ("bad frame
// in rt_sigreturn"). Without XSAVE the kernel saves FPU state with
// FXSAVE, which works everywhere; AVX and later, which need XSAVE, are
// hidden with it. Giving them back where KVM handles XSETBV (real
// hardware) is future work, to be decided by probing, not assumed.
func GuestCPUID(supported []kvm.CPUIDEntry, id, cpus int) []kvm.CPUIDEntry {
	out := make([]kvm.CPUIDEntry, 0, len(supported))
	coreBits := uint32(bits.Len(uint(cpus - 1)))
	for _, e := range supported {
		switch e.Function {
		case 1:
			e.ECX = e.ECX&^(leaf1ECXVMX|leaf1ECXAVXFamily|leaf1ECXXSAVE) | leaf1ECXHypervisor
			// EBX[31:24] initial APIC id, [23:16] logical processors.
			e.EBX = e.EBX&0x0000ffff | uint32(id)<<24 | uint32(cpus)<<16
			if cpus > 1 {
				e.EDX |= leaf1EDXHTT
			}
		case 7:
			switch e.Index {
			case 0:
				e.ECX &^= leaf7ECXLA57 | leaf7ECXPKU | leaf7ECXOSPKE | leaf7ECXAVXFamily
				e.EBX &^= leaf7EBXAVXFamily | leaf7EBXFSGSBASE
				e.EDX &^= leaf7EDXAVXFamily
			case 1:
				e.EAX &^= leaf71EAXAVX
			}
		case 0xd:
			continue
		case 0xa:
			e.EAX, e.EBX, e.ECX, e.EDX = 0, 0, 0, 0
		case 0xb, 0x1f:
			e.EDX = uint32(id)
			switch e.Index {
			case 0: // SMT level: one thread per core
				e.EAX, e.EBX, e.ECX = 0, 1, 1<<8
			case 1: // core level: cpus cores
				e.EAX, e.EBX, e.ECX = coreBits, uint32(cpus), 2<<8|1
			default:
				e.EAX, e.EBX, e.ECX = 0, 0, e.Index
			}
		case 0x80000001:
			e.ECX &^= ext1ECXSVM
		case 0x8000001e:
			e.EAX = uint32(id)
			e.EBX = uint32(id) & 0xff
			e.ECX = 0
		}
		out = append(out, e)
	}
	return out
}
