package image

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeImage(t *testing.T) (string, *Manifest) {
	t.Helper()
	dir := t.TempDir()
	m := &Manifest{FormatVersion: FormatVersion, InputsDigest: "d", KernelVersion: "6.1.0-56-amd64", Files: map[string]FileInfo{}}
	for _, name := range imageFiles {
		info, err := outputFile(dir, name, func(w io.Writer) error {
			_, err := io.WriteString(w, "content of "+name)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		m.Files[name] = info
	}
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func TestManifestRoundTripAndVerify(t *testing.T) {
	dir, want := writeImage(t)
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.KernelVersion != want.KernelVersion || m.Files[InitrdFile] != want.Files[InitrdFile] {
		t.Fatalf("ReadManifest = %+v, want %+v", m, want)
	}
	if got := m.Files[VmlinuxFile]; got.Size != int64(len("content of vmlinux")) {
		t.Errorf("vmlinux size %d", got.Size)
	}
	ctx := context.Background()
	if err := m.Verify(ctx, dir); err != nil {
		t.Fatalf("Verify of an intact image: %v", err)
	}
	if _, ok := upToDate(ctx, dir, "d"); !ok {
		t.Error("upToDate is false for an intact image with the same digest")
	}
	if _, ok := upToDate(ctx, dir, "other"); ok {
		t.Error("upToDate is true for another inputs digest")
	}

	// Same size, other content: only the checksum can tell.
	os.WriteFile(filepath.Join(dir, VmlinuzFile), []byte("content of vmlinuX"), 0o644)
	if err := m.Verify(ctx, dir); err == nil || !strings.Contains(err.Error(), "vmlinuz") {
		t.Errorf("Verify of a changed vmlinuz: %v, want an error naming it", err)
	}
	if _, ok := upToDate(ctx, dir, "d"); ok {
		t.Error("upToDate is true for a damaged image")
	}
	os.Remove(filepath.Join(dir, InitrdFile))
	if err := m.Verify(ctx, dir); err == nil {
		t.Error("Verify passed with initrd.img missing")
	}
}

func TestReadManifestRejects(t *testing.T) {
	tests := []struct{ name, content, want string }{
		{"not JSON", "{", "parse"},
		{"no kernel version", `{"files":{}}`, "no kernel_version"},
		{"a file unlisted", `{"kernel_version":"6.1","files":{"vmlinux":{},"vmlinuz":{}}}`, "does not list initrd.img"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, ManifestFile), []byte(tt.content), 0o644)
			if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadManifest error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := ReadManifest(t.TempDir()); err == nil {
		t.Error("ReadManifest of an empty directory succeeded")
	}
}

func TestVerifyRefusesPathsInFileNames(t *testing.T) {
	dir, m := writeImage(t)
	m.Files["../escape"] = FileInfo{}
	if err := m.Verify(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "not a file name") {
		t.Fatalf("Verify with ../escape: %v", err)
	}
}
