package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/joeyrt/joey/image"
)

func init() {
	register("image", "build the guest image (kernel + initramfs with joey-agent)", runImage)
}

// installedAgent is where `make install` puts joey-agent.
const installedAgent = "/usr/local/lib/joey/joey-agent"

func runImage(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "build" {
		fmt.Fprintf(os.Stderr, "usage: joey image build [flags]\n\nRun `joey image build -h` for the flags.\n")
		return exitError{2}
	}
	fl := flag.NewFlagSet("joey image build", flag.ContinueOnError)
	var o image.Options
	fl.StringVar(&o.KernelPackage, "kernel-package", "", "build from this Debian linux-image `FILE.deb`")
	fl.StringVar(&o.KernelVersion, "kernel-version", "", "build from the installed kernel `VER` (/boot/vmlinuz-VER, /lib/modules/VER)")
	fl.StringVar(&o.Agent, "agent", "", "the static joey-agent `PATH` (default: joey-agent beside joey, else "+installedAgent+")")
	fl.StringVar(&o.Out, "out", image.DefaultOut, "write the image into `DIR`")
	fl.StringVar(&o.DownloadDir, "download-dir", image.DefaultDownloadDir, "download the kernel package into `DIR` when no kernel is given")
	fl.BoolVar(&o.DebugConsole, "debug-console", false, "add busybox so the agent can offer a shell on a virtio console")
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "usage: joey image build [--kernel-package FILE.deb | --kernel-version VER] [--agent PATH] [--out DIR] [--download-dir DIR] [--debug-console]\n\n"+
			"Without a kernel, the current Debian kernel package (linux-image-amd64's) is downloaded with apt.\n\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args[1:]); err != nil {
		return err
	}
	if fl.NArg() != 0 {
		fl.Usage()
		return fmt.Errorf("unexpected argument %q", fl.Arg(0))
	}
	if o.Agent == "" {
		agent, err := defaultAgent()
		if err != nil {
			return err
		}
		o.Agent = agent
	}
	o.Progress = os.Stderr
	_, err := image.Build(ctx, o)
	return err
}

// defaultAgent finds joey-agent beside the running joey (a build tree's
// bin/) or where `make install` puts it.
func defaultAgent() (string, error) {
	var tried []string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "joey-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if _, err := os.Stat(installedAgent); err == nil {
		return installedAgent, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("--agent: %w", err)
	}
	tried = append(tried, installedAgent)
	return "", fmt.Errorf("joey-agent is neither at %s: run `make build` (it makes bin/joey-agent beside bin/joey) or pass --agent PATH", strings.Join(tried, " nor at "))
}
