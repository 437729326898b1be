package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/joeyrt/joey/internal/hostcheck"
)

func init() {
	register("check", "report what this host offers joey (KVM or TCG, QEMU, TAP, image, …)", func(ctx context.Context, args []string) error {
		return runCheck(ctx, args, os.Stdout, os.Stderr)
	})
}

// runCheck is `joey check [--json] [--image DIR]`. It exits 1 when the
// default configuration cannot run a container here.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("joey check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON (its shape is documented on hostcheck.Report)")
	imageDir := fs.String("image", hostcheck.DefaultImageDir, "directory of the guest image to verify")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: joey check [--json] [--image DIR]\n\n"+
			"Reports what this host gives joey and what to install for what is missing.\n"+
			"Exits 1 if the default configuration cannot run a container here.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	r, err := hostcheck.Probe(ctx, hostcheck.Host{ImageDir: *imageDir})
	if err != nil {
		return fmt.Errorf("probe host: %w", err)
	}
	if *asJSON {
		err = hostcheck.WriteJSON(stdout, r)
	} else {
		err = hostcheck.WriteTable(stdout, r)
	}
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if !r.OK {
		return exitError{code: 1}
	}
	return nil
}
