package qemu

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/joeyrt/joey/internal/testutil"
)

// This file builds a throwaway guest for the boot test: a busybox initramfs
// with the kernel modules it needs, until the real image builder exists.

// devKernelDir is the development kernel, relative to this package.
const devKernelDir = "../../.cache/dev/k"

// testKernel finds the guest kernel and a directory holding its modules:
//   - JOEY_TEST_KERNEL_DIR, an unpacked linux-image package (boot/,
//     lib/modules/VERSION/), with JOEY_TEST_KERNEL optionally naming the
//     kernel to boot (an ELF vmlinux boots fastest);
//   - else the guest image of JOEY_TEST_IMAGE (what `make test` sets): its
//     vmlinux, and the modules inside its initrd;
//   - else the repository's .cache/dev kernel, if present.
func testKernel(t *testing.T) (kernel, modDir string) {
	t.Helper()
	dir, kernel := os.Getenv("JOEY_TEST_KERNEL_DIR"), os.Getenv("JOEY_TEST_KERNEL")
	if dir == "" && os.Getenv("JOEY_TEST_IMAGE") != "" {
		img := testutil.GuestImage(t)
		modDir := filepath.Join(t.TempDir(), "modules")
		extractModules(t, filepath.Join(img, "initrd.img"), modDir)
		return filepath.Join(img, "vmlinux"), modDir
	}
	if dir == "" {
		if _, err := os.Stat(devKernelDir); err != nil {
			testutil.Unavailable(t, "no guest kernel: set JOEY_TEST_IMAGE to a guest image, or JOEY_TEST_KERNEL_DIR to an "+
				"unpacked linux-image package (dpkg-deb -x linux-image-*.deb DIR) and JOEY_TEST_KERNEL to its decompressed vmlinux")
		}
		dir = devKernelDir
		if kernel == "" {
			if _, err := os.Stat(filepath.Join(dir, "../vmlinux")); err == nil {
				kernel = filepath.Join(dir, "../vmlinux")
			}
		}
	}
	mods, _ := filepath.Glob(filepath.Join(dir, "lib/modules/*/kernel"))
	if len(mods) != 1 {
		testutil.Unavailable(t, fmt.Sprintf("%s: want exactly one lib/modules/VERSION/kernel, found %q", dir, mods))
	}
	if kernel == "" {
		for _, pattern := range []string{"boot/vmlinux-*", "boot/vmlinuz-*"} {
			if m, _ := filepath.Glob(filepath.Join(dir, pattern)); len(m) == 1 {
				kernel = m[0]
				break
			}
		}
	}
	if _, err := os.Stat(kernel); kernel == "" || err != nil {
		testutil.Unavailable(t, fmt.Sprintf("no guest kernel in %s/boot and JOEY_TEST_KERNEL is not set", dir))
	}
	abs, err := filepath.Abs(kernel)
	if err != nil {
		t.Fatal(err)
	}
	return abs, mods[0]
}

// extractModules copies the .ko files of a gzipped newc initramfs into dir.
func extractModules(t *testing.T, initrd, dir string) {
	t.Helper()
	f, err := os.Open(initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", initrd, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(zr)
	field := func(hdr []byte, i int) int {
		n, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("%s: bad cpio header %q", initrd, hdr)
		}
		return int(n)
	}
	read := func(n int) []byte {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatalf("%s: %v", initrd, err)
		}
		return b
	}
	// Header and name are padded to 4 bytes together, and so is the data.
	for {
		hdr := read(110)
		if string(hdr[:6]) != "070701" {
			t.Fatalf("%s: not a newc archive", initrd)
		}
		nameSize, size := field(hdr, 11), field(hdr, 6)
		name := strings.TrimRight(string(read(nameSize)), "\x00")
		read((4 - (110+nameSize)%4) % 4)
		if name == "TRAILER!!!" {
			return
		}
		data := read(size)
		read((4 - size%4) % 4)
		if strings.HasSuffix(name, ".ko") {
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(name)), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// moduleOrder returns the .ko files that load names, dependencies first.
// Dependencies come from each module's .modinfo section, so the tree needs
// no modules.dep (an unpacked package has none: depmod makes it).
func moduleOrder(t *testing.T, modDir string, names ...string) []string {
	t.Helper()
	norm := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	files := map[string]string{}
	filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			files[norm(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return nil
	})
	var order []string
	seen := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		name = norm(name)
		if seen[name] {
			return
		}
		seen[name] = true
		p, ok := files[name]
		if !ok {
			t.Fatalf("module %s is not in %s (built in? then drop it from the list)", name, modDir)
		}
		for _, dep := range moduleDepends(t, p) {
			visit(dep)
		}
		order = append(order, p)
	}
	for _, n := range names {
		visit(n)
	}
	return order
}

func moduleDepends(t *testing.T, path string) []string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		t.Fatalf("%s has no .modinfo", path)
	}
	data, err := sec.Data()
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(v) > 0 {
			return strings.Split(string(v), ",")
		}
	}
	return nil
}

// cpioEntry is one file of a newc archive.
type cpioEntry struct {
	name         string
	mode         uint32 // type and permission bits
	data         []byte // file content or symlink target
	major, minor uint32 // device nodes
}

// writeCpio writes entries as an uncompressed newc archive, which the kernel
// unpacks as the initramfs.
func writeCpio(t *testing.T, path string, entries []cpioEntry) {
	t.Helper()
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	for i, e := range append(entries, cpioEntry{name: "TRAILER!!!"}) {
		fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			i+1, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, e.major, e.minor, len(e.name)+1, 0)
		b.WriteString(e.name)
		b.WriteByte(0)
		pad()
		b.Write(e.data)
		pad()
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// busyboxInitramfs writes an initramfs with busybox, the given modules (in
// /lib/modules, in load order as $MODULES) and init as /init.
func busyboxInitramfs(t *testing.T, path string, modules []string, init string) {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testutil.Unavailable(t, "needs a static /bin/busybox (apt-get install busybox-static): "+err.Error())
	}
	const dir, file, link, char = 0o040755, 0o100755, 0o120777, 0o020600
	entries := []cpioEntry{
		{name: "bin", mode: dir}, {name: "dev", mode: dir}, {name: "proc", mode: dir},
		{name: "sys", mode: dir}, {name: "mnt", mode: dir}, {name: "lib", mode: dir},
		{name: "lib/modules", mode: dir},
		// The kernel opens /dev/console for init before anything is mounted.
		{name: "dev/console", mode: char, major: 5, minor: 1},
		{name: "bin/busybox", mode: file, data: bb},
		{name: "bin/sh", mode: link, data: []byte("busybox")},
	}
	var names []string
	for _, m := range modules {
		ko, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(m)
		entries = append(entries, cpioEntry{name: "lib/modules/" + name, mode: file, data: ko})
		names = append(names, name)
	}
	script := "#!/bin/sh\nMODULES='" + strings.Join(names, " ") + "'\n" + init
	entries = append(entries, cpioEntry{name: "init", mode: file, data: []byte(script)})
	writeCpio(t, path, entries)
}
