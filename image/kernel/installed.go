package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/joeyrt/joey/image/kmod"
)

// ReadInstalled reads the kernel release version installed under root
// ("/" for this system): root/boot/vmlinuz-<version> and the depmod index of
// root/lib/modules/<version>/. Module files are read only by ReadModules.
func ReadInstalled(ctx context.Context, root, version string) (*Kernel, error) {
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	vmlinuz := filepath.Join(root, "boot", "vmlinuz-"+version)
	bz, err := os.ReadFile(vmlinuz)
	if err != nil {
		return nil, fmt.Errorf("installed kernel %s: %w (is linux-image-%s installed? `ls /boot` lists the installed ones)", version, err, version)
	}
	dir := filepath.Join(root, "lib", "modules", version)
	k := &Kernel{Version: version, BzImage: bz, Modules: kmod.NewIndex()}
	for _, f := range []struct {
		name     string
		required bool
		read     func(io.Reader) error
	}{
		{"modules.dep", true, k.Modules.ReadDep},
		{"modules.softdep", false, k.Modules.ReadSoftdep},
		{"modules.alias", false, k.Modules.ReadAlias},
		{"modules.builtin", false, k.Modules.ReadBuiltin},
		{"modules.builtin.modinfo", false, k.Modules.ReadBuiltinModinfo},
	} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := readFile(filepath.Join(dir, f.name), f.read)
		if errors.Is(err, os.ErrNotExist) && !f.required {
			continue
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("installed kernel %s: %s is missing: run `depmod %s`", version, filepath.Join(dir, f.name), version)
		}
		if err != nil {
			return nil, fmt.Errorf("installed kernel %s: %w", version, err)
		}
	}
	k.read = func(ctx context.Context, paths []string) (map[string][]byte, error) {
		got := make(map[string][]byte, len(paths))
		for _, p := range paths {
			data, err := os.ReadFile(filepath.Join(dir, p))
			if err != nil {
				return nil, fmt.Errorf("read module: %w", err)
			}
			if got[p], err = uncompressModule(ctx, p, data); err != nil {
				return nil, err
			}
		}
		return got, nil
	}
	return k, nil
}

func readFile(path string, read func(io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return read(f)
}
