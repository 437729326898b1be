// Package imagetest makes the fake kernels, modules and packages the image
// builder's tests build from.
package imagetest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"strings"
)

// Module returns a fake module file: the smallest ELF64 relocatable with a
// .modinfo section, which is all the image builder reads of a module. The
// section holds the given "key=value" strings, NUL-terminated as the
// kernel's build writes them.
func Module(modinfo ...string) []byte {
	return moduleWithSection(".modinfo", strings.Join(modinfo, "\x00")+"\x00")
}

// WithoutModinfo returns an ELF relocatable with no .modinfo section.
func WithoutModinfo() []byte { return moduleWithSection(".nothing", "") }

func moduleWithSection(section, data string) []byte {
	shstrtab := "\x00" + section + "\x00.shstrtab\x00"
	const hdrSize, shSize = 64, 64
	dataOff := uint64(hdrSize)
	strOff := dataOff + uint64(len(data))
	shOff := (strOff + uint64(len(shstrtab)) + 7) &^ 7
	var buf bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: hdrSize, Shentsize: shSize, Shnum: 3, Shstrndx: 2,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&buf, binary.LittleEndian, hdr)
	buf.WriteString(data)
	buf.WriteString(shstrtab)
	buf.Write(make([]byte, shOff-uint64(buf.Len())))
	for _, sh := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: dataOff, Size: uint64(len(data)), Addralign: 1},
		{Name: uint32(len(section)) + 2, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstrtab)), Addralign: 1},
	} {
		binary.Write(&buf, binary.LittleEndian, sh)
	}
	return buf.Bytes()
}
