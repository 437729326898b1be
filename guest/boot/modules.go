package boot

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ModuleList is where `joey image build` writes the modules to load, one
// path relative to /lib/modules/<version>/ per line, dependencies first.
const ModuleList = "/etc/joey/modules"

// LoadModules loads every module listed in listPath (relative to modDir) in
// order with finit_module, and returns their names. A module the kernel
// already has (EEXIST) is fine; any other failure stops the boot, because a
// missing virtio or 9p driver would only show up later as a hang.
func LoadModules(listPath, modDir string) ([]string, error) {
	f, err := os.Open(listPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open module list: %w", err)
	}
	defer f.Close()
	var loaded []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rel := strings.TrimSpace(sc.Text())
		if rel == "" || strings.HasPrefix(rel, "#") {
			continue
		}
		if err := LoadModule(filepath.Join(modDir, rel), ""); err != nil {
			return loaded, err
		}
		loaded = append(loaded, ModuleName(rel))
	}
	return loaded, sc.Err()
}

// LoadModule loads one .ko file with the given parameters.
func LoadModule(path, params string) error {
	m, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer m.Close()
	for {
		err = unix.FinitModule(int(m.Fd()), params, 0)
		if err == unix.EINTR {
			continue
		}
		break
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	return nil
}

// ModuleName is the kernel's name of a module file: "kernel/fs/9p/9p.ko" → "9p",
// with dashes folded to underscores as the kernel does.
func ModuleName(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}
