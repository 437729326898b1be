package kvm

import (
	"encoding/binary"
	"testing"
	"unsafe"
)

// runSize is a kvm_run mapping as x86 KVM sizes it: the run page, the
// port I/O data page and the coalesced MMIO ring.
const runSize = 3 * 4096

func TestIODecodeRefusesDataOutsideKvmRun(t *testing.T) {
	tests := []struct {
		name        string
		size, count uint32
		offset      uint64
		ok          bool
	}{
		{"one byte", 1, 1, 0x1000, true},
		{"string of 4 dwords", 4, 4, 0x1000, true},
		{"ends at the mapping's end", 1, 16, runSize - 16, true},
		{"offset past the mapping", 1, 1, runSize, false},
		{"runs past the mapping", 4, 8, runSize - 16, false},
		{"huge count", 4, 0xffffffff, 0x1000, false},
		{"zero size", 0, 1, 0x1000, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Run{mem: make([]byte, runSize)}
			r.mem[runUnion] = 1 // out
			r.mem[runUnion+1] = byte(tc.size)
			binary.LittleEndian.PutUint16(r.mem[runUnion+2:], 0x3f8)
			binary.LittleEndian.PutUint32(r.mem[runUnion+4:], tc.count)
			binary.LittleEndian.PutUint64(r.mem[runUnion+8:], tc.offset)
			io, err := r.IO()
			if tc.ok != (err == nil) {
				t.Fatalf("IO() = %+v, %v; want ok=%v", io, err, tc.ok)
			}
			if err == nil && (len(io.Data) != int(tc.size*tc.count) || io.Port != 0x3f8 || !io.Out) {
				t.Fatalf("decoded %+v", io)
			}
		})
	}
}

func TestMMIODecodeRefusesBadLength(t *testing.T) {
	for _, n := range []uint32{0, 9, 0xffffffff} {
		r := Run{mem: make([]byte, 4096)}
		binary.LittleEndian.PutUint32(r.mem[runUnion+16:], n)
		if _, err := r.MMIO(); err == nil {
			t.Errorf("MMIO of %d bytes accepted", n)
		}
	}
	r := Run{mem: make([]byte, 4096)}
	binary.LittleEndian.PutUint64(r.mem[runUnion:], 0xd0000000)
	binary.LittleEndian.PutUint32(r.mem[runUnion+16:], 4)
	r.mem[runUnion+20] = 1
	m, err := r.MMIO()
	if err != nil || m.Addr != 0xd0000000 || len(m.Data) != 4 || !m.Write {
		t.Fatalf("MMIO() = %+v, %v", m, err)
	}
}

func TestImmediateExitIsByteOne(t *testing.T) {
	r := Run{mem: make([]byte, 64)}
	r.SetImmediateExit(true)
	if r.mem[1] != 1 || r.mem[0] != 0 {
		t.Fatalf("kvm_run head % x", r.mem[:4])
	}
	r.SetImmediateExit(false)
	if r.mem[1] != 0 {
		t.Fatal("immediate_exit not cleared")
	}
}

func TestExitReasonNames(t *testing.T) {
	if ExitShutdown.String() != "KVM_EXIT_SHUTDOWN" || ExitReason(99).String() != "KVM_EXIT_99" {
		t.Fatal(ExitShutdown.String(), ExitReason(99).String())
	}
}

func TestIOEventFDIsKVMsSixtyFourBytes(t *testing.T) {
	const want = ioctlIOEventFD >> 16 & 0x3fff // the size the ioctl number encodes
	if n := unsafe.Sizeof(ioEventFD{}); n != want || want != 64 {
		t.Fatalf("kvm_ioeventfd is %d bytes here, the ioctl number says %d, <linux/kvm.h> 64", n, want)
	}
}
