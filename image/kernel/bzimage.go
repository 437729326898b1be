package kernel

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
)

// SetupHeader is the part of the x86 boot protocol header (see the kernel's
// Documentation/arch/x86/boot.rst) that locates the compressed kernel.
type SetupHeader struct {
	// SetupSects is the number of 512-byte setup sectors after the boot
	// sector; a recorded 0 means 4.
	SetupSects int
	// Version is the boot protocol version, e.g. 0x020f for 2.15.
	Version uint16
	// PayloadOffset and PayloadLength locate the compressed vmlinux
	// relative to the start of the protected-mode code.
	PayloadOffset, PayloadLength uint32
}

// ProtectedModeStart is the file offset of the protected-mode code, which
// follows the boot sector and the setup sectors.
func (h SetupHeader) ProtectedModeStart() int { return (h.SetupSects + 1) * 512 }

// Offsets into a bzImage, from boot.rst.
const (
	offSetupSects    = 0x1f1
	offBootFlag      = 0x1fe
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
	headerEnd        = 0x250
)

// ParseSetupHeader reads the setup header of a bzImage. Payload fields
// exist from boot protocol 2.08 on (Linux 2.6.26).
func ParseSetupHeader(bz []byte) (SetupHeader, error) {
	var h SetupHeader
	if len(bz) < headerEnd {
		return h, fmt.Errorf("bzImage: %d bytes is too short for a setup header", len(bz))
	}
	le := binary.LittleEndian
	if le.Uint16(bz[offBootFlag:]) != 0xaa55 || string(bz[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return h, fmt.Errorf("bzImage: no x86 boot header (boot flag 0xAA55 and \"HdrS\" magic): not a bzImage")
	}
	h.Version = le.Uint16(bz[offVersion:])
	if h.Version < 0x0208 {
		return h, fmt.Errorf("bzImage: boot protocol %d.%02d has no payload fields; need 2.08 or newer", h.Version>>8, h.Version&0xff)
	}
	h.SetupSects = int(bz[offSetupSects])
	if h.SetupSects == 0 {
		h.SetupSects = 4
	}
	h.PayloadOffset = le.Uint32(bz[offPayloadOffset:])
	h.PayloadLength = le.Uint32(bz[offPayloadLength:])
	return h, nil
}

// Payload returns the compressed vmlinux inside a bzImage.
func Payload(bz []byte) ([]byte, error) {
	h, err := ParseSetupHeader(bz)
	if err != nil {
		return nil, err
	}
	start := int64(h.ProtectedModeStart()) + int64(h.PayloadOffset)
	end := start + int64(h.PayloadLength)
	if h.PayloadLength == 0 || end > int64(len(bz)) {
		return nil, fmt.Errorf("bzImage: payload at %d+%d lies outside the %d-byte file", start, h.PayloadLength, len(bz))
	}
	return bz[start:end], nil
}

var (
	xzMagic   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	gzipMagic = []byte{0x1f, 0x8b}
)

// Vmlinux decompresses the payload of a bzImage into w: the ELF vmlinux.
// Debian compresses it with xz and the x86 BCJ filter, which Go xz decoders
// do not implement, so xz payloads go through the xz command. The payload
// is followed by its uncompressed size, hence --single-stream.
func Vmlinux(ctx context.Context, bz []byte, w io.Writer) error {
	p, err := Payload(bz)
	if err != nil {
		return err
	}
	switch {
	case bytes.HasPrefix(p, xzMagic):
		return filter(ctx, bytes.NewReader(p), w, "xz-utils", "xz", "-dc", "--single-stream")
	case bytes.HasPrefix(p, gzipMagic):
		zr, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return fmt.Errorf("bzImage: gzip payload: %w", err)
		}
		zr.Multistream(false)
		if _, err := io.Copy(w, zr); err != nil {
			return fmt.Errorf("bzImage: gzip payload: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("bzImage: payload starts with % x: only xz and gzip kernels are supported", p[:min(len(p), 6)])
	}
}

// Xen ELF note announcing the 32-bit PVH entry point (xen/include/public/elfnote.h).
const xenElfnotePhys32Entry = 18

// CheckVmlinux verifies that path is an x86-64 ELF executable and reports
// whether it has a PVH entry point, which QEMU and the built-in VMM need to
// boot it directly.
func CheckVmlinux(path string) (pvh bool, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("vmlinux: not an ELF file: %w", err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		return false, fmt.Errorf("vmlinux: %v %v %v, want a 64-bit x86-64 executable", f.Class, f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			return false, fmt.Errorf("vmlinux: read notes: %w", err)
		}
		if hasNote(notes, "Xen", xenElfnotePhys32Entry) {
			return true, nil
		}
	}
	return false, nil
}

// hasNote walks ELF notes: namesz, descsz, type, then name and desc each
// padded to 4 bytes.
func hasNote(notes []byte, name string, typ uint32) bool {
	le := binary.LittleEndian
	for len(notes) >= 12 {
		namesz, descsz, t := le.Uint32(notes), le.Uint32(notes[4:]), le.Uint32(notes[8:])
		nameEnd := 12 + (int64(namesz)+3)&^3
		end := nameEnd + (int64(descsz)+3)&^3
		if end > int64(len(notes)) {
			return false
		}
		if t == typ && string(bytes.TrimRight(notes[12:12+namesz], "\x00")) == name {
			return true
		}
		notes = notes[end:]
	}
	return false
}
