package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"

	"github.com/joeyrt/joey/image/kernel"
)

// kernelInput is the chosen kernel: its identity is known before the
// (possibly slow) load, so an up-to-date image costs only a checksum.
type kernelInput struct {
	source   KernelSource
	identity string // for the inputs digest
	load     func(ctx context.Context) (*kernel.Kernel, []moduleFile, error)
}

func (o *Options) kernelInput(ctx context.Context, say func(string, ...any)) (*kernelInput, error) {
	if o.KernelVersion != "" {
		return installedInput(ctx, o.Root, o.KernelVersion, say)
	}
	deb := o.KernelPackage
	if deb == "" {
		var err error
		if deb, err = kernel.Download(ctx, o.DownloadDir, o.Progress); err != nil {
			return nil, fmt.Errorf("fetch the kernel package (or pass --kernel-package or --kernel-version): %w", err)
		}
	}
	sum, err := hashFile(deb)
	if err != nil {
		return nil, fmt.Errorf("--kernel-package: %w", err)
	}
	return &kernelInput{
		source:   KernelSource{Kind: "package", Name: filepath.Base(deb), SHA256: sum.SHA256},
		identity: "package " + sum.SHA256,
		load: func(ctx context.Context) (*kernel.Kernel, []moduleFile, error) {
			say("reading kernel package %s", deb)
			k, err := kernel.ReadDeb(ctx, deb)
			if err != nil {
				return nil, nil, err
			}
			mods, err := imageModules(ctx, k, say)
			return k, mods, err
		},
	}, nil
}

// installedInput reads an installed kernel at once: its files are on disk
// and small once resolved, and their content is its identity.
func installedInput(ctx context.Context, root, version string, say func(string, ...any)) (*kernelInput, error) {
	say("reading installed kernel %s", version)
	k, err := kernel.ReadInstalled(ctx, root, version)
	if err != nil {
		return nil, fmt.Errorf("--kernel-version: %w", err)
	}
	mods, err := imageModules(ctx, k, say)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "vmlinuz %d\n", len(k.BzImage))
	h.Write(k.BzImage)
	for _, m := range mods {
		fmt.Fprintf(h, "module %s %d\n", m.path, len(m.data))
		h.Write(m.data)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	return &kernelInput{
		source:   KernelSource{Kind: "installed", Name: version, SHA256: sum},
		identity: "installed " + version + " " + sum,
		load: func(context.Context) (*kernel.Kernel, []moduleFile, error) {
			return k, mods, nil
		},
	}, nil
}

// imageModules resolves the root modules and reads them in load order,
// uncompressed.
func imageModules(ctx context.Context, k *kernel.Kernel, say func(string, ...any)) ([]moduleFile, error) {
	order, err := k.Modules.Resolve(rootModules)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Version, err)
	}
	say("resolving %d modules of kernel %s", len(order), k.Version)
	paths := make([]string, len(order))
	for i, m := range order {
		paths[i] = m.Path
	}
	data, err := k.ReadModules(ctx, paths)
	if err != nil {
		return nil, err
	}
	mods := make([]moduleFile, len(order))
	for i, p := range paths {
		mods[i] = moduleFile{path: kernel.UncompressedPath(p), data: data[p]}
	}
	return mods, nil
}
