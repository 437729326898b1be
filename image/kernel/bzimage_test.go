package kernel

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/joeyrt/joey/image/internal/imagetest"
	"github.com/joeyrt/joey/internal/testutil"
)

func TestParseSetupHeader(t *testing.T) {
	tests := []struct {
		name       string
		bz         []byte
		wantPMOff  int
		wantOffset uint32
		wantErr    string
	}{
		{"setup_sects 0 means 4", imagetest.BzImage(0, 0x020f, 0x3a5, []byte("x")), 5 * 512, 0x3a5, ""},
		{"setup_sects 27 (Debian 6.1)", imagetest.BzImage(27, 0x020f, 0x3a5, []byte("x")), 28 * 512, 0x3a5, ""},
		{"too short", make([]byte, 0x200), 0, 0, "too short"},
		{"no HdrS magic", make([]byte, 4096), 0, 0, "not a bzImage"},
		{"protocol too old", imagetest.BzImage(4, 0x0207, 0, []byte("x")), 0, 0, "need 2.08"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseSetupHeader(tt.bz)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.ProtectedModeStart() != tt.wantPMOff || h.PayloadOffset != tt.wantOffset || h.PayloadLength != 5 {
				t.Errorf("header %+v: protected mode at %d, want %d; payload offset %#x, want %#x; length %d, want 5",
					h, h.ProtectedModeStart(), tt.wantPMOff, h.PayloadOffset, tt.wantOffset, h.PayloadLength)
			}
		})
	}
}

func TestPayloadOutsideFileIsAnError(t *testing.T) {
	bz := imagetest.BzImage(4, 0x020f, 16, []byte("payload"))
	binary.LittleEndian.PutUint32(bz[0x24c:], uint32(len(bz)))
	if _, err := Payload(bz); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("Payload with a length past the end: %v", err)
	}
}

func TestVmlinuxDecompressesThePayload(t *testing.T) {
	vmlinux := bytes.Repeat([]byte("\x7fELF pretend kernel "), 1000)
	gz := func() []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(vmlinux)
		zw.Close()
		return b.Bytes()
	}
	xz := func() []byte {
		if _, err := exec.LookPath("xz"); err != nil {
			testutil.Unavailable(t, "xz not found (apt-get install xz-utils)")
		}
		// What the kernel's build runs: xz with the x86 BCJ filter.
		cmd := exec.Command("xz", "--format=xz", "--check=crc32", "--x86", "--lzma2=dict=1MiB", "-c")
		cmd.Stdin = bytes.NewReader(vmlinux)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for name, payload := range map[string]func() []byte{"gzip": gz, "xz with BCJ": xz} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if err := Vmlinux(context.Background(), imagetest.BzImage(27, 0x020f, 0x3a5, payload()), &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), vmlinux) {
				t.Errorf("decompressed %d bytes that differ from the %d put in", out.Len(), len(vmlinux))
			}
		})
	}
	t.Run("unknown compression", func(t *testing.T) {
		err := Vmlinux(context.Background(), imagetest.BzImage(27, 0x020f, 0x3a5, []byte("LZ4?not really")), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "only xz and gzip") {
			t.Fatalf("error %v, want one naming the supported formats", err)
		}
	})
}

func TestCheckVmlinux(t *testing.T) {
	// The test binary is an x86-64 ELF executable without a PVH note.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if pvh, err := CheckVmlinux(exe); err != nil || pvh {
		t.Errorf("CheckVmlinux(test binary) = %v, %v; want false, nil", pvh, err)
	}
	text := filepath.Join(t.TempDir(), "vmlinux")
	os.WriteFile(text, []byte("not an elf"), 0o644)
	if _, err := CheckVmlinux(text); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("CheckVmlinux(text file) = %v, want a not-an-ELF error", err)
	}
}

func TestHasNote(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		le := binary.LittleEndian
		b := le.AppendUint32(nil, uint32(len(name)+1))
		b = le.AppendUint32(b, uint32(len(desc)))
		b = le.AppendUint32(b, typ)
		b = append(b, name...)
		b = append(b, make([]byte, 4-len(name)%4)...) // NUL and padding
		b = append(b, desc...)
		return append(b, make([]byte, (4-len(desc)%4)%4)...)
	}
	// Debian's vmlinux: Xen notes of other types, then the PVH entry.
	notes := append(note("Linux", 6, []byte("linux\x00")), note("Xen", 5, []byte("xen-3.0\x00"))...)
	if hasNote(notes, "Xen", xenElfnotePhys32Entry) {
		t.Error("found a PVH note among notes without one")
	}
	notes = append(notes, note("Xen", xenElfnotePhys32Entry, []byte{0x50, 0x08, 0, 1, 0, 0, 0, 0})...)
	if !hasNote(notes, "Xen", xenElfnotePhys32Entry) {
		t.Error("missed the PVH note")
	}
	if hasNote(notes[:len(notes)-3], "Xen", xenElfnotePhys32Entry) {
		t.Error("accepted a truncated note")
	}
}
