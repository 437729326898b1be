// Package kernel reads a Linux kernel and its modules from a Debian kernel
// package (without unpacking it) or from an installed system, fetches the
// package with apt when asked, and decompresses a bzImage into the ELF
// vmlinux that PVH boots.
package kernel

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/joeyrt/joey/image/kmod"
)

// Kernel is one kernel release: its bzImage and the index of its modules.
// ReadDeb and ReadInstalled make them.
type Kernel struct {
	// Version is the release, as in /lib/modules/<Version> ("6.1.0-56-amd64").
	Version string
	// BzImage is the kernel as shipped (boot/vmlinuz-<Version>).
	BzImage []byte
	// Modules indexes every loadable and built-in module.
	Modules *kmod.Index

	read func(ctx context.Context, paths []string) (map[string][]byte, error)
}

// ReadModules returns the uncompressed content of the module files at paths
// (as in Modules, relative to /lib/modules/<Version>/), keyed by path.
func (k *Kernel) ReadModules(ctx context.Context, paths []string) (map[string][]byte, error) {
	for _, p := range paths {
		if !filepath.IsLocal(p) {
			return nil, fmt.Errorf("module path %q leaves the modules directory", p)
		}
	}
	return k.read(ctx, paths)
}

// checkVersion refuses release names that could not be a single directory.
func checkVersion(v string) error {
	if v == "" || strings.ContainsAny(v, "/\x00") || v == "." || v == ".." {
		return fmt.Errorf("%q is not a kernel release name (like 6.1.0-56-amd64)", v)
	}
	return nil
}

// checkVermagic makes sure a module was built for this kernel: one from
// another release would be refused by the guest kernel at boot, far from
// the build that could have said why.
func checkVermagic(path string, info kmod.Modinfo, version string) error {
	if info.Vermagic != "" && !strings.HasPrefix(info.Vermagic, version+" ") && info.Vermagic != version {
		return fmt.Errorf("module %s is built for kernel %q, not %s", path, strings.Fields(info.Vermagic)[0], version)
	}
	return nil
}
