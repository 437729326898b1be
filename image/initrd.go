package image

import (
	"compress/gzip"
	"io"
	"path"
	"strings"

	"github.com/joeyrt/joey/image/cpio"
)

// rootModules are the drivers for the devices joey gives a guest: virtio
// transports (PCI for q35 and the built-in VMM, MMIO for microvm), the
// agent's console port, network, block, entropy, vsock, the shared
// filesystems (9p, virtio-fs), overlay and ext4 for container filesystems,
// and crc32c, which ext4 asks for through a softdep.
var rootModules = []string{
	"virtio_pci", "virtio_mmio", "virtio_console", "virtio_net", "virtio_blk",
	"virtio_rng", "9pnet_virtio", "9p", "virtiofs", "overlay", "ext4",
	"crc32c_generic", "vmw_vsock_virtio_transport",
}

// RootModules returns the modules every image carries, before their
// dependencies are added.
func RootModules() []string { return append([]string(nil), rootModules...) }

// Paths inside the initramfs the agent reads (see guest/boot).
const (
	modulesListPath   = "etc/joey/modules"
	kernelVersionPath = "etc/joey/kernel-version"
	debugConsolePath  = "etc/joey/debug-console"
	busyboxPath       = "bin/busybox"
)

// moduleFile is a module as stored in the image.
type moduleFile struct {
	path string // relative to /lib/modules/<version>/, always ending .ko
	data []byte
}

// initrdSpec is everything that goes into the initramfs.
type initrdSpec struct {
	version string
	agent   []byte
	modules []moduleFile // in load order
	busybox []byte       // nil without --debug-console
}

// entries lists the initramfs: /init, the mount points PID 1 needs, the
// modules and the lists that drive the agent's boot. /dev/console is there
// because the kernel opens it for init's stdin/stdout/stderr before any
// devtmpfs is mounted; without it the agent starts with no output at all.
func (s initrdSpec) entries() []cpio.Entry {
	es := []cpio.Entry{
		cpio.File("init", 0o755, s.agent),
		cpio.CharDevice("dev/console", 0o600, 5, 1),
		cpio.File(kernelVersionPath, 0o644, []byte(s.version+"\n")),
	}
	dirs := map[string]bool{}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "etc/joey", "mnt", "lib/modules/" + s.version} {
		dirs[d] = true
	}
	var list strings.Builder
	for _, m := range s.modules {
		name := path.Join("lib/modules", s.version, m.path)
		es = append(es, cpio.File(name, 0o644, m.data))
		dirs[path.Dir(name)] = true
		list.WriteString(m.path + "\n")
	}
	es = append(es, cpio.File(modulesListPath, 0o644, []byte(list.String())))
	if s.busybox != nil {
		es = append(es,
			cpio.File(busyboxPath, 0o755, s.busybox),
			cpio.File(debugConsolePath, 0o644, []byte("1\n")))
		dirs["bin"] = true
	}
	// Every directory and each of its parents, once.
	all := map[string]bool{}
	for d := range dirs {
		for ; d != "." && !all[d]; d = path.Dir(d) {
			all[d] = true
		}
	}
	for d := range all {
		es = append(es, cpio.Dir(d, 0o755))
	}
	return es
}

// write writes the gzip'd cpio archive at BestSpeed: measured on Debian
// 12's modules plus an agent, level 9 is 8% smaller and 20 times slower,
// and the guest inflates either equally fast. The gzip header has no name
// or time, so the bytes depend only on the content.
func (s initrdSpec) write(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := cpio.Write(zw, s.entries()); err != nil {
		return err
	}
	return zw.Close()
}
