package imagetest

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/joeyrt/joey/internal/testutil"
)

// BzImage lays out a bzImage the way the kernel's build does: boot sector
// and setup sectors, then protected-mode code holding the payload at
// payloadAt, followed by the payload's 4-byte uncompressed size (which
// payload_length counts) and more code.
func BzImage(setupSects byte, version uint16, payloadAt int, payload []byte) []byte {
	sects := int(setupSects)
	if sects == 0 {
		sects = 4
	}
	bz := make([]byte, (sects+1)*512+payloadAt)
	le := binary.LittleEndian
	bz[0x1f1] = setupSects
	le.PutUint16(bz[0x1fe:], 0xaa55)
	copy(bz[0x202:], "HdrS")
	le.PutUint16(bz[0x206:], version)
	le.PutUint32(bz[0x248:], uint32(payloadAt))
	le.PutUint32(bz[0x24c:], uint32(len(payload)+4))
	bz = append(bz, payload...)
	bz = le.AppendUint32(bz, 0x12345678)
	return append(bz, "trailing code"...)
}

// Gzip compresses data.
func Gzip(data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

// WriteTree writes files (path → content) under dir.
func WriteTree(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// BuildDeb packs files into a .deb with dpkg-deb, as a linux-image package
// is laid out, and returns its path.
func BuildDeb(t testing.TB, files map[string][]byte) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		testutil.Unavailable(t, "dpkg-deb not found")
	}
	root := t.TempDir()
	WriteTree(t, root, files)
	WriteTree(t, root, map[string][]byte{"DEBIAN/control": []byte(
		"Package: linux-image-test\nVersion: 1\nArchitecture: amd64\nMaintainer: joey tests <t@example.org>\nDescription: test kernel\n")})
	deb := filepath.Join(t.TempDir(), "linux-image-test.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v\n%s", err, out)
	}
	return deb
}
