// Package ociimage builds the busybox test image joey's tests and demo use, from
// the host's static busybox (Debian's busybox-static) instead of a registry:
// the machines that run the suite have no registry access, and a locally built
// image is the same bytes on every run for the same busybox.
//
// The rootfs holds /bin/busybox with a symlink per applet, /etc/passwd and
// /etc/group with root and joey (uid 1000), /tmp (1777), /root and /home/joey.
// It is available as an OCI image layout tarball (WriteBusybox) or unpacked
// into a directory (BusyboxRootfs).
package ociimage

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"sort"
	"strings"
)

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

// DefaultPath is the PATH the image's config gives its processes.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// JoeyUID is the uid and gid of the image's unprivileged user "joey".
const JoeyUID = 1000

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"joey:x:1000:1000:joey:/home/joey:/bin/sh\n"
	group = "root:x:0:\n" +
		"joey:x:1000:\n"
)

// entry is one file of the rootfs. Names are relative ("bin/sh") and every
// entry is owned by root; mode carries the type bits.
type entry struct {
	name     string
	mode     fs.FileMode
	linkname string // symlinks
	data     []byte // regular files
}

// busybox is the host binary the image is built from.
type busybox struct {
	data []byte
	arch string // GOARCH spelling, as the OCI config wants it
}

// loadBusybox reads and checks the host's busybox: it must be statically linked,
// since the image carries no libc.
func loadBusybox(data []byte) (*busybox, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("read %s as ELF: %w", BusyboxPath, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("%s is dynamically linked and cannot run in an image without libc: apt-get install busybox-static", BusyboxPath)
		}
	}
	arch, ok := map[elf.Machine]string{
		elf.EM_X86_64:  "amd64",
		elf.EM_AARCH64: "arm64",
		elf.EM_386:     "386",
		elf.EM_RISCV:   "riscv64",
		elf.EM_PPC64:   "ppc64le",
		elf.EM_S390:    "s390x",
	}[f.Machine]
	if !ok {
		return nil, fmt.Errorf("%s: unsupported ELF machine %v", BusyboxPath, f.Machine)
	}
	return &busybox{data: data, arch: arch}, nil
}

// applets asks busybox which applets it was built with. The list comes from
// the binary itself, so it always matches the busybox that goes into the image.
func applets(ctx context.Context, path string) ([]string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "--list")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	var names []string
	for _, name := range strings.Fields(string(out)) {
		// "busybox" names the binary itself; a name with a slash would escape bin/.
		if name == "busybox" || strings.Contains(name, "/") || name == "." || name == ".." {
			continue
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, errors.New(path + " --list printed no applets")
	}
	return names, nil
}

// rootfs lists the image's files, sorted by name so that parents come before
// their children and the layer is the same bytes on every run.
func rootfs(bb *busybox, appletNames []string) []entry {
	dir := func(name string, perm fs.FileMode) entry {
		return entry{name: name, mode: fs.ModeDir | perm}
	}
	file := func(name string, perm fs.FileMode, data []byte) entry {
		return entry{name: name, mode: perm, data: data}
	}
	entries := []entry{
		dir("bin", 0o755),
		file("bin/busybox", 0o755, bb.data),
		dir("dev", 0o755),
		dir("etc", 0o755),
		file("etc/group", 0o644, []byte(group)),
		file("etc/passwd", 0o644, []byte(passwd)),
		dir("home", 0o755),
		dir("home/joey", 0o755),
		dir("proc", 0o555),
		dir("root", 0o700),
		dir("sys", 0o555),
		dir("tmp", fs.ModeSticky|0o777),
	}
	for _, name := range appletNames {
		entries = append(entries, entry{name: "bin/" + name, mode: fs.ModeSymlink | 0o777, linkname: "busybox"})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return entries
}
