// Package image builds joey's guest image: a distribution kernel, and an
// initramfs whose /init is joey-agent with only the kernel modules joey's
// devices need, described by a manifest of checksums. The same inputs give
// the same bytes, an unchanged image is not rebuilt, and a failed build
// leaves the previous image as it was.
package image

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/joeyrt/joey/image/kernel"
)

// Defaults of Options.
const (
	DefaultOut         = "/var/lib/joey/image"
	DefaultDownloadDir = "/var/cache/joey"
	DefaultBusybox     = "/bin/busybox"
)

// Options say what to build an image from and where to put it. The error
// messages of Build name the `joey image build` flags.
type Options struct {
	// KernelPackage is a Debian linux-image .deb file (--kernel-package).
	KernelPackage string
	// KernelVersion is an installed kernel release (--kernel-version),
	// read from Root/boot and Root/lib/modules.
	KernelVersion string
	// Root is the filesystem an installed kernel is read from; "" is "/".
	Root string
	// DownloadDir receives the current Debian kernel package when neither
	// KernelPackage nor KernelVersion is set; "" is DefaultDownloadDir.
	DownloadDir string
	// Agent is the static joey-agent binary, required (--agent).
	Agent string
	// Out is the image directory (--out); "" is DefaultOut.
	Out string
	// DebugConsole adds busybox and the marker that makes the agent offer a
	// shell on a virtio console (--debug-console).
	DebugConsole bool
	// Busybox is the static busybox for DebugConsole; "" is DefaultBusybox.
	Busybox string
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
}

// Result is what Build did.
type Result struct {
	// Manifest describes the image now in Dir.
	Manifest *Manifest
	// Dir is the image directory, absolute.
	Dir string
	// UpToDate says Dir already held this image, so nothing was written.
	UpToDate bool
}

// Build makes the image in o.Out unless it is already up to date.
func Build(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	if err := o.complete(); err != nil {
		return nil, err
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Progress, format+"\n", args...) }
	if err := checkOutDir(o.Out); err != nil {
		return nil, err
	}
	agent, err := staticBinary(o.Agent, "--agent", "build a static joey-agent with `make build`")
	if err != nil {
		return nil, err
	}
	in := inputs{agentSHA256: sha256Hex(agent), debugConsole: o.DebugConsole}
	var busybox []byte
	if o.DebugConsole {
		if busybox, err = staticBinary(o.Busybox, "--debug-console: busybox", "apt-get install busybox-static"); err != nil {
			return nil, err
		}
		in.busybox = sha256Hex(busybox)
	}
	kin, err := o.kernelInput(ctx, say)
	if err != nil {
		return nil, err
	}
	in.kernel = kin.identity
	digest := in.digest()
	if m, ok := upToDate(ctx, o.Out, digest); ok {
		say("guest image up to date")
		return &Result{Manifest: m, Dir: o.Out, UpToDate: true}, nil
	}

	k, mods, err := kin.load(ctx)
	if err != nil {
		return nil, err
	}
	m := &Manifest{
		FormatVersion: FormatVersion,
		InputsDigest:  digest,
		KernelVersion: k.Version,
		Kernel:        kin.source,
		Agent:         AgentInfo{SHA256: in.agentSHA256, Version: agentVersion(ctx, o.Agent)},
		DebugConsole:  o.DebugConsole,
		Modules:       make([]string, len(mods)),
		Files:         map[string]FileInfo{},
	}
	for i, mod := range mods {
		m.Modules[i] = mod.path
	}
	if err := write(ctx, o.Out, m, k.BzImage, initrdSpec{version: k.Version, agent: agent, modules: mods, busybox: busybox}, say); err != nil {
		return nil, err
	}
	say("done in %.1fs: guest image for kernel %s in %s", time.Since(start).Seconds(), k.Version, o.Out)
	return &Result{Manifest: m, Dir: o.Out}, nil
}

// complete fills in defaults and checks the options fit together.
func (o *Options) complete() error {
	if o.KernelPackage != "" && o.KernelVersion != "" {
		return fmt.Errorf("--kernel-package and --kernel-version both name a kernel: pass one of them")
	}
	if o.Agent == "" {
		return fmt.Errorf("--agent is required: the path of a static joey-agent (make build makes bin/joey-agent)")
	}
	if o.Out == "" {
		o.Out = DefaultOut
	}
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	o.Out = out
	if o.Root == "" {
		o.Root = "/"
	}
	if o.DownloadDir == "" {
		o.DownloadDir = DefaultDownloadDir
	}
	if o.Busybox == "" {
		o.Busybox = DefaultBusybox
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// write builds the image files in a staging directory next to out and
// swaps it in; on any failure the staging directory goes and out is as
// it was.
func write(ctx context.Context, out string, m *Manifest, bz []byte, initrd initrdSpec, say func(string, ...any)) error {
	staging, err := stagingDir(out)
	if err != nil {
		return err
	}
	// After a successful swap it holds the previous image.
	defer os.RemoveAll(staging)

	if m.Files[VmlinuzFile], err = outputFile(staging, VmlinuzFile, func(w io.Writer) error {
		_, err := w.Write(bz)
		return err
	}); err != nil {
		return err
	}
	say("decompressing vmlinux")
	if m.Files[VmlinuxFile], err = outputFile(staging, VmlinuxFile, func(w io.Writer) error {
		return kernel.Vmlinux(ctx, bz, w)
	}); err != nil {
		return err
	}
	if m.VmlinuxPVH, err = kernel.CheckVmlinux(filepath.Join(staging, VmlinuxFile)); err != nil {
		return err
	}
	if !m.VmlinuxPVH {
		say("warning: vmlinux has no PVH entry point (CONFIG_PVH); boot vmlinuz instead")
	}
	if m.Files[InitrdFile], err = outputFile(staging, InitrdFile, initrd.write); err != nil {
		return err
	}
	say("writing %s (%.1f MB)", InitrdFile, float64(m.Files[InitrdFile].Size)/1e6)
	if err := writeManifest(staging, m); err != nil {
		return fmt.Errorf("write %s: %w", ManifestFile, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return install(staging, out)
}
