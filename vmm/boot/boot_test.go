package boot

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/vmm/kvm"
	"github.com/joeyrt/joey/vmm/memory"
)

func TestStartInfoLayoutIsHVMStartInfoV1(t *testing.T) {
	b := StartInfo(0x20000, 0x6040, 0x6100, 1, 3)
	le := binary.LittleEndian
	want := []struct {
		off  int
		size int
		v    uint64
		name string
	}{
		{0, 4, 0x336ec578, "magic"}, {4, 4, 1, "version"}, {8, 4, 0, "flags"},
		{12, 4, 1, "nr_modules"}, {16, 8, 0x6040, "modlist_paddr"}, {24, 8, 0x20000, "cmdline_paddr"},
		{32, 8, 0, "rsdp_paddr"}, {40, 8, 0x6100, "memmap_paddr"}, {48, 4, 3, "memmap_entries"},
	}
	if len(b) != 56 {
		t.Fatalf("hvm_start_info is %d bytes, want 56", len(b))
	}
	for _, w := range want {
		var got uint64
		if w.size == 4 {
			got = uint64(le.Uint32(b[w.off:]))
		} else {
			got = le.Uint64(b[w.off:])
		}
		if got != w.v {
			t.Errorf("%s at %d = %#x, want %#x", w.name, w.off, got, w.v)
		}
	}
}

func TestMemoryMapKeepsEBDAAndISAHoleOutOfRAM(t *testing.T) {
	m := MemoryMap(512 << 20)
	want := []E820Entry{
		{0, 0x9fc00, E820RAM},
		{0x9fc00, 0x60400, E820Reserved},
		{0x100000, 512<<20 - 0x100000, E820RAM},
	}
	if len(m) != len(want) {
		t.Fatalf("map %v", m)
	}
	for i := range m {
		if m[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, m[i], want[i])
		}
	}
	enc := encodeMemmap(m)
	if len(enc) != 72 || binary.LittleEndian.Uint64(enc[24:]) != 0x9fc00 || binary.LittleEndian.Uint32(enc[40:]) != E820Reserved {
		t.Fatalf("hvm_memmap_table_entry encoding % x", enc)
	}
}

func TestParamsPlaceCmdlineInitrdAndStartInfo(t *testing.T) {
	mem, err := memory.New(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	initrd := bytes.Repeat([]byte{0xab}, 3<<20)
	si, err := Params(mem, Kernel{Entry: 0x1000000, End: 0x2000000}, "console=ttyS0", initrd)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := mem.Slice(si, 56)
	le := binary.LittleEndian
	cmd, _ := mem.Slice(le.Uint64(b[24:]), 14)
	if string(cmd) != "console=ttyS0\x00" {
		t.Fatalf("command line %q", cmd)
	}
	if le.Uint32(b[12:]) != 1 {
		t.Fatal("no initrd module")
	}
	mod, _ := mem.Slice(le.Uint64(b[16:]), 16)
	addr, size := le.Uint64(mod), le.Uint64(mod[8:])
	if size != uint64(len(initrd)) || addr%initrdAlign != 0 || addr+size > 64<<20 || addr < 0x2000000 {
		t.Fatalf("initrd at %#x+%#x", addr, size)
	}
	got, _ := mem.Slice(addr, size)
	if !bytes.Equal(got, initrd) {
		t.Fatal("initrd bytes differ")
	}
}

func TestParamsRefuseWhatDoesNotFit(t *testing.T) {
	mem, err := memory.New(16 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if _, err := Params(mem, Kernel{End: 15 << 20}, "x", make([]byte, 4<<20)); err == nil {
		t.Error("initrd overlapping the kernel accepted")
	}
	if _, err := Params(mem, Kernel{}, string(bytes.Repeat([]byte("a"), MaxCmdline)), nil); err == nil {
		t.Error("over-long command line accepted")
	}
}

func note(name string, typ uint32, desc []byte) []byte {
	pad := func(b []byte) []byte { return append(b, make([]byte, (4-len(b)%4)%4)...) }
	h := make([]byte, 12)
	binary.LittleEndian.PutUint32(h, uint32(len(name)+1))
	binary.LittleEndian.PutUint32(h[4:], uint32(len(desc)))
	binary.LittleEndian.PutUint32(h[8:], typ)
	return append(append(h, pad([]byte(name+"\x00"))...), pad(desc)...)
}

func TestPVHEntryNoteIsFoundAmongOthers(t *testing.T) {
	entry8 := binary.LittleEndian.AppendUint64(nil, 0x1000a20)
	entry4 := binary.LittleEndian.AppendUint32(nil, 0x1000b30)
	tests := []struct {
		name  string
		notes []byte
		want  uint64
		found bool
	}{
		{"8-byte desc after a GNU note", append(note("GNU", 3, []byte{1, 2, 3, 4, 5}), note("Xen", 18, entry8)...), 0x1000a20, true},
		{"4-byte desc", note("Xen", 18, entry4), 0x1000b30, true},
		{"other Xen note", note("Xen", 5, entry8), 0, false},
		{"same type other owner", note("Linux", 18, entry8), 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := pvhEntry(bytes.NewReader(tc.notes))
			if err != nil || ok != tc.found || got != tc.want {
				t.Fatalf("pvhEntry = %#x, %v, %v; want %#x, %v", got, ok, err, tc.want, tc.found)
			}
		})
	}
	if _, _, err := pvhEntry(bytes.NewReader(note("Xen", 18, entry8)[:20])); err == nil {
		t.Error("truncated note accepted")
	}
}

func TestLoadELFOfRealVmlinux(t *testing.T) {
	dir := testutil.GuestImage(t)
	f, err := os.Open(filepath.Join(dir, "vmlinux"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := memory.New(256 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	k, err := LoadELF(mem, f)
	if err != nil {
		t.Fatal(err)
	}
	if k.Entry < 0x1000000 || k.Entry >= k.End || k.End > 256<<20 {
		t.Fatalf("entry %#x end %#x", k.Entry, k.End)
	}
	small, err := memory.New(8 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if _, err := LoadELF(small, f); err == nil {
		t.Fatal("kernel loaded into RAM too small for it")
	}
}

func TestGuestCPUIDPerVCPU(t *testing.T) {
	sup := []kvm.CPUIDEntry{
		{Function: 1, EBX: 0xff00_0800, ECX: leaf1ECXVMX | 1 | 1<<28 | 1<<26},
		{Function: 7, Index: 0, ECX: leaf7ECXLA57 | 1},
		{Function: 0xa, EAX: 0x07300402},
		{Function: 0xd, Index: 0, EAX: 0x207, EBX: 0x240, ECX: 0xa88},
		{Function: 0xd, Index: 1, EAX: 0xf},
		{Function: 0xd, Index: 2, EAX: 0x100, EBX: 0x240},
		{Function: 0xb, Index: 0, Flags: kvm.CPUIDFlagSignificantIndex},
		{Function: 0xb, Index: 1, Flags: kvm.CPUIDFlagSignificantIndex},
		{Function: 0xb, Index: 2, Flags: kvm.CPUIDFlagSignificantIndex},
		{Function: 0x80000001, ECX: ext1ECXSVM | 1},
	}
	got := GuestCPUID(sup, 3, 4)
	by := func(fn, idx uint32) kvm.CPUIDEntry {
		for _, e := range got {
			if e.Function == fn && e.Index == idx {
				return e
			}
		}
		t.Fatalf("leaf %#x.%d missing", fn, idx)
		return kvm.CPUIDEntry{}
	}
	tests := []struct {
		name string
		ok   bool
	}{
		{"hypervisor bit set", by(1, 0).ECX&leaf1ECXHypervisor != 0},
		{"VMX hidden", by(1, 0).ECX&leaf1ECXVMX == 0},
		{"other leaf-1 ECX bits kept", by(1, 0).ECX&1 == 1},
		{"APIC id 3 in leaf 1", by(1, 0).EBX>>24 == 3},
		{"4 logical CPUs in leaf 1", by(1, 0).EBX>>16&0xff == 4},
		{"CLFLUSH size kept", by(1, 0).EBX&0xffff == 0x0800},
		{"LA57 hidden", by(7, 0).ECX&leaf7ECXLA57 == 0},
		{"PMU hidden", by(0xa, 0).EAX == 0},
		{"XSAVE hidden", by(1, 0).ECX&(1<<26|1<<27) == 0},
		{"AVX hidden", by(1, 0).ECX&(1<<28) == 0},
		{"x2APIC id in every 0xB sub-leaf", by(0xb, 0).EDX == 3 && by(0xb, 1).EDX == 3 && by(0xb, 2).EDX == 3},
		{"SMT level: 1 thread", by(0xb, 0).EBX == 1 && by(0xb, 0).ECX == 0x100},
		{"core level: 4 cores, 2 id bits", by(0xb, 1).EBX == 4 && by(0xb, 1).EAX == 2 && by(0xb, 1).ECX == 0x201},
		{"no level past core", by(0xb, 2).ECX&0xff00 == 0},
		{"SVM hidden", by(0x80000001, 0).ECX&ext1ECXSVM == 0},
	}
	for _, tc := range tests {
		if !tc.ok {
			t.Errorf("%s: no", tc.name)
		}
	}
	for _, e := range got {
		if e.Function == 0xd {
			t.Errorf("XSAVE leaf 0xd.%d kept", e.Index)
		}
	}
	if sup[0].ECX&leaf1ECXHypervisor != 0 {
		t.Error("GuestCPUID modified its input")
	}
}

func TestPVHEntryStateIsFlat32BitProtectedMode(t *testing.T) {
	s := pvhSregs(kvm.Sregs{CR4: 0x20, EFER: 0x500, CR3: 0x1000})
	if s.CR0&1 == 0 || s.CR0&(1<<31) != 0 || s.CR4 != 0 || s.EFER != 0 {
		t.Fatalf("CR0 %#x CR4 %#x EFER %#x", s.CR0, s.CR4, s.EFER)
	}
	for name, seg := range map[string]kvm.Segment{"cs": s.CS, "ds": s.DS, "ss": s.SS, "es": s.ES} {
		if seg.Base != 0 || seg.Limit != 0xffffffff || seg.DB != 1 || seg.G != 1 || seg.Present != 1 {
			t.Errorf("%s not flat 32-bit: %+v", name, seg)
		}
	}
	if s.CS.Selector != selCode || s.CS.Type&0x8 == 0 || s.DS.Selector != selData {
		t.Errorf("selectors cs %#x ds %#x", s.CS.Selector, s.DS.Selector)
	}
	// The descriptors in the GDT must match the hidden state.
	if gdt[selCode/8]>>40&0xff != 0x9b || gdt[selData/8]>>40&0xff != 0x93 || gdt[selTSS/8]>>40&0xff != 0x8b {
		t.Error("GDT access bytes disagree with the segment state")
	}
}
