package containerdtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// disabledPlugins are switched off in every private daemon. CRI is not what
// these tests exercise and would want CNI config and a sandbox image; NRI
// listens on a host-global socket (/var/run/nri) that two daemons would fight
// over; opt would create /opt/containerd on the host.
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.images",
	"io.containerd.cri.v1.runtime",
	"io.containerd.podsandbox.controller.v1.podsandbox",
	"io.containerd.nri.v1.nri",
	"io.containerd.internal.v1.opt",
}

// daemonConfig is what the config file is rendered from.
type daemonConfig struct {
	root, state, address string
	logLevel             string
	snapshotter          string
	extra                string
}

// render writes containerd's config (version 3). Only the snapshotter used
// for unpacking differs between hosts: import goes through the transfer
// service, which unpacks into the snapshotter its unpack_config names, so a
// host without overlayfs needs that list to name native.
func (c daemonConfig) render() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by joey's test/containerdtest for one test's private daemon.\n")
	fmt.Fprintf(&b, "version = 3\n")
	fmt.Fprintf(&b, "root = %s\n", strconv.Quote(c.root))
	fmt.Fprintf(&b, "state = %s\n", strconv.Quote(c.state))
	fmt.Fprintf(&b, "disabled_plugins = [")
	for i, p := range disabledPlugins {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(p))
	}
	b.WriteString("]\n\n")
	fmt.Fprintf(&b, "[grpc]\n  address = %s\n\n", strconv.Quote(c.address))
	fmt.Fprintf(&b, "[debug]\n  level = %s\n\n", strconv.Quote(c.logLevel))
	fmt.Fprintf(&b, "[[plugins.\"io.containerd.transfer.v1.local\".unpack_config]]\n")
	fmt.Fprintf(&b, "  platform = %s\n", strconv.Quote("linux/"+runtime.GOARCH))
	fmt.Fprintf(&b, "  snapshotter = %s\n", strconv.Quote(c.snapshotter))
	fmt.Fprintf(&b, "  differ = \"walking\"\n")
	if c.extra != "" {
		fmt.Fprintf(&b, "\n%s\n", c.extra)
	}
	return b.Bytes()
}

// probeOverlay mounts a small overlay under dir (which must be on the
// filesystem containerd's root is on) and checks that a write through it lands
// in the upper directory. containerd's own check at plugin load looks at the
// kernel and the filesystem but not at whether a mount actually succeeds here.
func probeOverlay(dir string) (retErr error) {
	probe, err := os.MkdirTemp(dir, "overlay-probe-")
	if err != nil {
		return fmt.Errorf("overlay probe: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(probe); err != nil && retErr == nil {
			retErr = fmt.Errorf("overlay probe: %w", err)
		}
	}()
	sub := func(name string) string { return filepath.Join(probe, name) }
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(sub(d), 0o755); err != nil {
			return fmt.Errorf("overlay probe: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(sub("lower"), "f"), []byte("lower"), 0o644); err != nil {
		return fmt.Errorf("overlay probe: %w", err)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", sub("lower"), sub("upper"), sub("work"))
	if err := unix.Mount("overlay", sub("merged"), "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", dir, err)
	}
	defer func() {
		if err := unix.Unmount(sub("merged"), unix.MNT_DETACH); err != nil && retErr == nil {
			retErr = fmt.Errorf("overlay probe: unmount: %w", err)
		}
	}()
	if data, err := os.ReadFile(filepath.Join(sub("merged"), "f")); err != nil || string(data) != "lower" {
		return fmt.Errorf("overlay on %s does not show its lower dir (%q, %v)", dir, data, err)
	}
	if err := os.WriteFile(filepath.Join(sub("merged"), "g"), []byte("upper"), 0o644); err != nil {
		return fmt.Errorf("write through overlay on %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(sub("upper"), "g")); err != nil {
		return fmt.Errorf("overlay on %s: write did not reach the upper dir: %w", dir, err)
	}
	return nil
}
