package hostcheck

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHost is a host made of files: a root for /dev, /sys and /proc, a bin
// directory for PATH with shell scripts standing in for binaries, and an
// image directory.
type fakeHost struct {
	t     *testing.T
	root  string
	bin   string
	image string
}

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	d := t.TempDir()
	f := &fakeHost{t: t, root: filepath.Join(d, "root"), bin: filepath.Join(d, "bin"), image: filepath.Join(d, "image")}
	for _, dir := range []string{f.root, f.bin} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fakeHost) host() Host { return Host{Root: f.root, PATH: f.bin, ImageDir: f.image} }

// file writes content to rel under the fake root.
func (f *fakeHost) file(rel, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeHost) dir(rel string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Join(f.root, rel), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

// script puts an executable shell script at path.
func (f *fakeHost) script(path, body string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

// kvm makes /dev/kvm provided by module (kvm_pvm, kvm_intel, kvm_amd).
func (f *fakeHost) kvm(module string) {
	f.file("dev/kvm", "")
	f.dir("sys/module/" + module)
}

// qemu installs a qemu-system-x86_64 that prints a version and offers accels.
func (f *fakeHost) qemu(accels ...string) {
	f.script(filepath.Join(f.bin, qemuBinary), `case "$1" in
--version) echo "QEMU emulator version 8.2.2 (fake)"; echo "Copyright (c) 2003-2023";;
-accel) echo "Accelerators supported in QEMU binary:"; for a in `+strings.Join(accels, " ")+`; do echo $a; done;;
*) exit 1;;
esac`)
}

func (f *fakeHost) containerd(versionLine string) {
	f.script(filepath.Join(f.bin, "containerd"), "echo '"+versionLine+"'")
}

// mountinfo writes the mount table /proc/self/mountinfo.
func (f *fakeHost) mountinfo(lines ...string) {
	f.file("proc/self/mountinfo", strings.Join(lines, "\n")+"\n")
}

const (
	mountRoot     = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw"
	mountTmpfsCg  = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755"
	mountV1Memory = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory"
	mountUnified  = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw"
	mountV2       = "31 23 0:28 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate"
)

// goodImage writes an image whose manifest matches its files.
func (f *fakeHost) goodImage() {
	f.t.Helper()
	writeImage(f.t, f.image, map[string]string{"vmlinux": "ELF kernel", "vmlinuz": "bzImage", "initrd.img": "cpio"}, nil)
}

// writeImage writes files to dir and a manifest describing them; edit may
// change the manifest before it is written.
func writeImage(t *testing.T, dir string, files map[string]string, edit func(m map[string]any)) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries := map[string]any{}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(content))
		entries[name] = map[string]any{"sha256": hex.EncodeToString(sum[:]), "size": len(content)}
	}
	m := map[string]any{"kernel_version": "6.1.0-56-amd64", "files": entries, "agent": "joey-agent"}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// usableHost is a host that can run a container: PVM like ours, QEMU with
// TCG and KVM, /dev/net/tun, hybrid cgroups and a valid image.
func usableHost(t *testing.T) *fakeHost {
	f := newFakeHost(t)
	f.kvm("kvm_pvm")
	f.qemu("tcg", "kvm")
	f.file("dev/net/tun", "")
	f.mountinfo(mountRoot, mountTmpfsCg, mountV1Memory, mountUnified)
	f.goodImage()
	return f
}
