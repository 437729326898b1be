package kernel

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/joeyrt/joey/image/kmod"
)

// ReadDeb reads a Debian linux-image package: its bzImage, and every
// module's own metadata (the package has no modules.dep: depmod runs in its
// postinst). It streams the package's data through `dpkg-deb
// --fsys-tarfile` and keeps one module in memory at a time, so the ~400 MB
// of modules never touch the disk. ReadModules later streams it once more
// for the few modules the image needs.
func ReadDeb(ctx context.Context, debPath string) (*Kernel, error) {
	k := &Kernel{Modules: kmod.NewIndex()}
	var buf bytes.Buffer
	err := walkDeb(ctx, debPath, func(name string, r io.Reader) error {
		if rest, ok := strings.CutPrefix(name, "boot/vmlinuz-"); ok {
			if err := k.setVersion(rest, name); err != nil {
				return err
			}
			data, err := io.ReadAll(r)
			k.BzImage = data
			return err
		}
		version, rel, ok := modulesPath(name)
		if !ok {
			return nil
		}
		if err := k.setVersion(version, name); err != nil {
			return err
		}
		switch {
		case rel == "modules.builtin":
			return k.Modules.ReadBuiltin(r)
		case rel == "modules.builtin.modinfo":
			return k.Modules.ReadBuiltinModinfo(r)
		case kmod.IsModuleFile(rel):
			buf.Reset()
			if _, err := buf.ReadFrom(r); err != nil {
				return err
			}
			ko, err := uncompressModule(ctx, rel, buf.Bytes())
			if err != nil {
				return err
			}
			info, err := kmod.ParseModinfo(ko)
			if err != nil {
				return fmt.Errorf("module %s: %w", rel, err)
			}
			if err := checkVermagic(rel, info, version); err != nil {
				return err
			}
			return k.Modules.AddModinfo(rel, info)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read kernel package %s: %w", debPath, err)
	}
	if k.BzImage == nil {
		return nil, fmt.Errorf("kernel package %s has no boot/vmlinuz-*: is it a linux-image package?", debPath)
	}
	k.read = func(ctx context.Context, paths []string) (map[string][]byte, error) {
		return readDebModules(ctx, debPath, k.Version, paths)
	}
	return k, nil
}

// setVersion records the release a file belongs to; a package holding two
// releases is refused rather than mixed.
func (k *Kernel) setVersion(v, file string) error {
	if err := checkVersion(v); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if k.Version != "" && k.Version != v {
		return fmt.Errorf("package holds two kernel releases, %s and %s (%s)", k.Version, v, file)
	}
	k.Version = v
	return nil
}

// modulesPath splits "lib/modules/<version>/<rel>" (or under usr/).
func modulesPath(name string) (version, rel string, ok bool) {
	rest, ok := strings.CutPrefix(name, "lib/modules/")
	if !ok {
		if rest, ok = strings.CutPrefix(name, "usr/lib/modules/"); !ok {
			return "", "", false
		}
	}
	version, rel, ok = strings.Cut(rest, "/")
	return version, rel, ok && rel != ""
}

func readDebModules(ctx context.Context, debPath, version string, paths []string) (map[string][]byte, error) {
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	got := make(map[string][]byte, len(want))
	err := walkDeb(ctx, debPath, func(name string, r io.Reader) error {
		v, rel, ok := modulesPath(name)
		if !ok || v != version || !want[rel] || got[rel] != nil {
			return nil
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if got[rel], err = uncompressModule(ctx, rel, data); err != nil {
			return err
		}
		if len(got) == len(want) {
			return errStop
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read modules from %s: %w", debPath, err)
	}
	for _, p := range paths {
		if got[p] == nil {
			return nil, fmt.Errorf("read modules from %s: %s is not in the package", debPath, p)
		}
	}
	return got, nil
}

// errStop ends a walkDeb early without error.
var errStop = errors.New("stop")

// walkDeb calls fn with the cleaned path ("boot/vmlinuz-…") and content of
// every regular file in the package's data archive, in archive order.
func walkDeb(ctx context.Context, debPath string, fn func(name string, r io.Reader) error) error {
	dpkg, err := exec.LookPath("dpkg-deb")
	if err != nil {
		return fmt.Errorf("dpkg-deb is not installed (apt-get install dpkg)")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, dpkg, "--fsys-tarfile", debPath)
	// dpkg-deb forks its decompressor, which keeps the pipes open when
	// only dpkg-deb is killed: stop the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dpkg-deb: %w", err)
	}
	walkErr := walkTar(tar.NewReader(out), fn)
	if walkErr != nil {
		// Stop dpkg-deb rather than read the rest. If it had failed on its
		// own first (a damaged package), its message says more than the
		// truncated archive does.
		cancel()
		cmd.Wait()
		if errors.Is(walkErr, errStop) {
			return nil
		}
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("%w (dpkg-deb: %s)", walkErr, msg)
		}
		return walkErr
	}
	io.Copy(io.Discard, out) // the archive's zero padding, so dpkg-deb can exit
	if err := cmd.Wait(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("dpkg-deb --fsys-tarfile: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func walkTar(tr *tar.Reader, fn func(name string, r io.Reader) error) error {
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read package data: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if err := fn(strings.TrimPrefix(path.Clean("/"+hdr.Name), "/"), tr); err != nil {
			return err
		}
	}
}
