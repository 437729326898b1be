package hostcheck

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestImageIsVerifiedAgainstItsManifest(t *testing.T) {
	good := map[string]string{"vmlinux": "ELF kernel", "vmlinuz": "bzImage", "initrd.img": "cpio", "agent.version": "v1"}
	files := func(f func(map[string]string)) map[string]string {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		if f != nil {
			f(m)
		}
		return m
	}
	entry := func(m map[string]any, name string) map[string]any {
		return m["files"].(map[string]any)[name].(map[string]any)
	}
	tests := []struct {
		name   string
		files  map[string]string
		edit   func(m map[string]any)
		after  func(t *testing.T, dir string) // changes made after the manifest
		status Status
		detail string
	}{
		{name: "matching image", files: files(nil), status: OK, detail: "kernel 6.1.0-56-amd64, 4 files match"},
		{name: "upper-case checksum", files: files(nil), status: OK, edit: func(m map[string]any) {
			e := entry(m, "vmlinux")
			e["sha256"] = strings.ToUpper(e["sha256"].(string))
		}},
		{name: "wrong checksum", files: files(nil), status: Missing, detail: "vmlinux: sha256", edit: func(m map[string]any) {
			entry(m, "vmlinux")["sha256"] = strings.Repeat("0", 64)
		}},
		{name: "wrong size", files: files(nil), status: Missing, detail: "vmlinuz: size 7, manifest says 8", edit: func(m map[string]any) {
			entry(m, "vmlinuz")["size"] = 8
		}},
		{name: "file changed after the build", files: files(nil), status: Missing, detail: "agent.version: size 3", after: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "agent.version"), []byte("v10"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "listed file gone", files: files(nil), status: Missing, detail: "initrd.img: no such file", after: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "initrd.img")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "kernel not in the manifest", files: files(func(m map[string]string) { delete(m, "vmlinux") }), status: Missing, detail: "does not list vmlinux"},
		{name: "no kernel version", files: files(nil), status: Missing, detail: "no kernel_version", edit: func(m map[string]any) {
			delete(m, "kernel_version")
		}},
		{name: "path in a file name", files: files(nil), status: Missing, detail: `lists "../etc/passwd"`, edit: func(m map[string]any) {
			m["files"].(map[string]any)["../etc/passwd"] = map[string]any{"sha256": "", "size": 0}
		}},
		{name: "manifest is not JSON", files: files(nil), status: Missing, detail: "parse manifest.json", after: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte("kernel: 6.1"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "no manifest", files: files(nil), status: Missing, detail: "read manifest.json: no such file", after: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, ManifestName)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "image")
			writeImage(t, dir, tt.files, tt.edit)
			if tt.after != nil {
				tt.after(t, dir)
			}
			c := image(context.Background(), dir)
			if c.Status != tt.status || !strings.Contains(c.Detail, tt.detail) {
				t.Fatalf("got %s %q, want %s with %q", c.Status, c.Detail, tt.status, tt.detail)
			}
			if c.Status == OK && c.Value != "6.1.0-56-amd64" {
				t.Errorf("value %q, want the kernel version", c.Value)
			}
			if c.Status != OK && !strings.Contains(c.Fix, "joey image build --out "+dir) {
				t.Errorf("fix %q does not say how to rebuild %s", c.Fix, dir)
			}
		})
	}
}
