// Package boot loads a stock Linux kernel into guest memory and sets up
// the vCPUs for it on x86-64. The kernel is the ELF vmlinux entered through
// PVH: the XEN_ELFNOTE_PHYS32_ENTRY note names a 32-bit protected-mode
// entry point that takes an hvm_start_info (command line, initrd, memory
// map) in EBX, so no real-mode setup code, zero page or page tables are
// needed: the kernel builds its boot_params from hvm_start_info itself.
package boot

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Guest-physical layout of what the loader writes below 1 MiB.
const (
	gdtAddr       = 0x500
	startInfoAddr = 0x6000
	modlistAddr   = 0x6040
	memmapAddr    = 0x6100
	cmdlineAddr   = 0x20000
	// MaxCmdline is Linux's COMMAND_LINE_SIZE on x86, NUL included.
	MaxCmdline = 2048
	// initrdAlign keeps the initrd on a 2 MiB boundary below the end of RAM.
	initrdAlign = 2 << 20
)

// XEN_ELFNOTE_PHYS32_ENTRY and the note owner name.
const (
	notePHYS32Entry = 18
	noteOwner       = "Xen"
	startInfoMagic  = 0x336ec578
)

// Memory is the guest RAM the loader writes.
type Memory interface {
	Size() uint64
	Slice(addr, n uint64) ([]byte, error)
	WriteAt(p []byte, addr uint64) error
}

// Kernel is a loaded kernel.
type Kernel struct {
	// Entry is the PVH entry point (guest physical).
	Entry uint64
	// End is the first byte after the loaded image.
	End uint64
}

// LoadELF copies the PT_LOAD segments of the vmlinux at r to their
// physical addresses and returns the PVH entry point.
func LoadELF(mem Memory, r io.ReaderAt) (Kernel, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return Kernel{}, fmt.Errorf("load kernel: %w", err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return Kernel{}, fmt.Errorf("load kernel: %v %v is not an x86-64 vmlinux", f.Class, f.Machine)
	}
	var k Kernel
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_NOTE:
			e, ok, err := pvhEntry(p.Open())
			if err != nil {
				return Kernel{}, fmt.Errorf("load kernel: %w", err)
			}
			if ok {
				k.Entry = e
			}
		case elf.PT_LOAD:
			if p.Filesz > p.Memsz {
				return Kernel{}, fmt.Errorf("load kernel: segment at %#x has filesz %#x > memsz %#x", p.Paddr, p.Filesz, p.Memsz)
			}
			dst, err := mem.Slice(p.Paddr, p.Memsz)
			if err != nil {
				return Kernel{}, fmt.Errorf("load kernel segment: %w", err)
			}
			if _, err := io.ReadFull(p.Open(), dst[:p.Filesz]); err != nil {
				return Kernel{}, fmt.Errorf("load kernel segment at %#x: %w", p.Paddr, err)
			}
			clear(dst[p.Filesz:])
			k.End = max(k.End, p.Paddr+p.Memsz)
		}
	}
	if k.Entry == 0 {
		return Kernel{}, errors.New("load kernel: no XEN_ELFNOTE_PHYS32_ENTRY note: the kernel was built without CONFIG_PVH")
	}
	return k, nil
}

// pvhEntry scans an ELF note segment for the PVH entry note.
func pvhEntry(r io.Reader) (uint64, bool, error) {
	notes, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return 0, false, fmt.Errorf("read notes: %w", err)
	}
	le := binary.LittleEndian
	align4 := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for len(notes) >= 12 {
		namesz, descsz, typ := uint64(le.Uint32(notes)), uint64(le.Uint32(notes[4:])), le.Uint32(notes[8:])
		rest := notes[12:]
		if align4(namesz) > uint64(len(rest)) || align4(descsz) > uint64(len(rest))-align4(namesz) {
			return 0, false, errors.New("truncated ELF note")
		}
		name := rest[:namesz]
		desc := rest[align4(namesz) : align4(namesz)+descsz]
		if typ == notePHYS32Entry && string(name) == noteOwner+"\x00" {
			switch len(desc) {
			case 4:
				return uint64(le.Uint32(desc)), true, nil
			case 8:
				return le.Uint64(desc), true, nil
			}
			return 0, false, fmt.Errorf("PVH entry note of %d bytes", len(desc))
		}
		notes = rest[align4(namesz)+align4(descsz):]
	}
	return 0, false, nil
}

// E820 memory types.
const (
	E820RAM      = 1
	E820Reserved = 2
)

// E820Entry is one range of the guest's memory map.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// ebdaStart is where RAM below 1 MiB ends: the extended BIOS data area and
// the ISA hole up to 1 MiB (which holds the MP table) are not RAM.
const ebdaStart = 0x9fc00

// MemoryMap is the e820 map of a guest with size bytes of RAM at 0.
func MemoryMap(size uint64) []E820Entry {
	return []E820Entry{
		{0, ebdaStart, E820RAM},
		{ebdaStart, 0x100000 - ebdaStart, E820Reserved},
		{0x100000, size - 0x100000, E820RAM},
	}
}

// StartInfo returns struct hvm_start_info (version 1) pointing at a
// command line, an optional initrd module and an e820 memory map.
func StartInfo(cmdline, modlist, memmap uint64, modules, memmapEntries uint32) []byte {
	b := make([]byte, 56)
	le := binary.LittleEndian
	le.PutUint32(b[0:], startInfoMagic)
	le.PutUint32(b[4:], 1) // version 1 has the memory map
	le.PutUint32(b[12:], modules)
	le.PutUint64(b[16:], modlist)
	le.PutUint64(b[24:], cmdline)
	// rsdp_paddr (b[32:]) stays 0: no ACPI, the kernel uses the MP table.
	le.PutUint64(b[40:], memmap)
	le.PutUint32(b[48:], memmapEntries)
	return b
}

// encodeMemmap returns hvm_memmap_table_entry records.
func encodeMemmap(m []E820Entry) []byte {
	b := make([]byte, 24*len(m))
	for i, e := range m {
		binary.LittleEndian.PutUint64(b[24*i:], e.Addr)
		binary.LittleEndian.PutUint64(b[24*i+8:], e.Size)
		binary.LittleEndian.PutUint32(b[24*i+16:], e.Type)
	}
	return b
}

// Params places everything but the kernel: the command line, the initrd
// (at the top of RAM, 2 MiB aligned) and hvm_start_info. It returns the
// address of hvm_start_info, which the BSP gets in EBX.
func Params(mem Memory, k Kernel, cmdline string, initrd []byte) (uint64, error) {
	if len(cmdline)+1 > MaxCmdline {
		return 0, fmt.Errorf("boot params: command line of %d bytes exceeds %d", len(cmdline), MaxCmdline-1)
	}
	if err := mem.WriteAt(append([]byte(cmdline), 0), cmdlineAddr); err != nil {
		return 0, fmt.Errorf("boot params: command line: %w", err)
	}
	if mem.Size() < 0x200000 {
		return 0, fmt.Errorf("boot params: %#x bytes of RAM is too little", mem.Size())
	}
	var modules uint32
	if len(initrd) > 0 {
		size := uint64(len(initrd))
		if size > mem.Size() {
			return 0, fmt.Errorf("boot params: initrd of %#x bytes does not fit in RAM", size)
		}
		addr := (mem.Size() - size) &^ (initrdAlign - 1)
		if addr < k.End {
			return 0, fmt.Errorf("boot params: initrd of %#x bytes overlaps the kernel (ends %#x) in %#x bytes of RAM", size, k.End, mem.Size())
		}
		if err := mem.WriteAt(initrd, addr); err != nil {
			return 0, fmt.Errorf("boot params: initrd: %w", err)
		}
		mod := make([]byte, 32)
		binary.LittleEndian.PutUint64(mod[0:], addr)
		binary.LittleEndian.PutUint64(mod[8:], size)
		if err := mem.WriteAt(mod, modlistAddr); err != nil {
			return 0, fmt.Errorf("boot params: module list: %w", err)
		}
		modules = 1
	}
	mm := MemoryMap(mem.Size())
	if err := mem.WriteAt(encodeMemmap(mm), memmapAddr); err != nil {
		return 0, fmt.Errorf("boot params: memory map: %w", err)
	}
	si := StartInfo(cmdlineAddr, modlistAddr, memmapAddr, modules, uint32(len(mm)))
	if err := mem.WriteAt(si, startInfoAddr); err != nil {
		return 0, fmt.Errorf("boot params: start info: %w", err)
	}
	return startInfoAddr, nil
}
