// Command joey-testimage writes the busybox test image that joey's tests and
// `make demo` use: an OCI image layout tarball for `ctr image import`
// (--out), and/or the same rootfs unpacked into a directory (--rootfs), both
// built from the host's busybox-static without a registry.
//
// With --out FILE it prints the image's full reference on stdout, the name to
// give `ctr run`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/joeyrt/joey/internal/ociimage"
)

func main() {
	ref := flag.String("ref", "docker.io/library/busybox:joey", "image reference the layout names its image with")
	out := flag.String("out", "", "write the OCI image layout tarball to `FILE` (- for stdout)")
	rootfs := flag.String("rootfs", "", "unpack the rootfs into `DIR` (empty or missing)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: joey-testimage [--ref REF] [--out FILE] [--rootfs DIR]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 || (*out == "" && *rootfs == "") {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *ref, *out, *rootfs); err != nil {
		fmt.Fprintf(os.Stderr, "joey-testimage: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, ref, out, rootfs string) error {
	name, err := ociimage.NormalizeRef(ref)
	if err != nil {
		return err
	}
	if rootfs != "" {
		if err := ociimage.BusyboxRootfs(rootfs); err != nil {
			return err
		}
	}
	switch out {
	case "":
	case "-":
		return ociimage.WriteBusybox(ctx, os.Stdout, name)
	default:
		if err := writeFile(ctx, out, name); err != nil {
			return err
		}
		fmt.Println(name)
	}
	return nil
}

// writeFile writes the layout next to path and renames it into place, so that
// an interrupted run never leaves a truncated tarball that looks finished.
func writeFile(ctx context.Context, path, ref string) (retErr error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write image: %w", err)
	}
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := ociimage.WriteBusybox(ctx, f, ref); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("write image: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write image: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write image: %w", err)
	}
	return nil
}
