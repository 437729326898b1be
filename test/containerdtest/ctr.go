package containerdtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joeyrt/joey/internal/ociimage"
)

// BusyboxRef is the name ImportBusybox gives the test image.
const BusyboxRef = "docker.io/library/busybox:joey"

// CtrCommand returns an unstarted ctr command aimed at the daemon and its
// namespace, for tests that need more than Ctr offers (a long-running
// `ctr run`, a terminal, reading output as it comes). CONTAINERD_* variables
// of the test's environment are dropped so that they cannot redirect it.
func (d *Daemon) CtrCommand(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--address", d.address, "--namespace", d.namespace}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(d.binDir, "ctr"), full...)
	cmd.Env = withoutEnv(os.Environ(), "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "CONTAINERD_SNAPSHOTTER")
	// If ctx ends, ctr is killed; its output pipes are then not waited on for
	// ever should a child (a container process) still hold them.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Ctr runs ctr with args (after the global --address and --namespace) and
// returns its output. A failed command's error includes its stderr.
func (d *Daemon) Ctr(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	return d.CtrStdin(ctx, nil, args...)
}

// CtrStdin is Ctr with stdin as ctr's standard input. Note that `ctr run`
// does not close a container's stdin at EOF: a test of stdin should run a
// command that reads a line.
func (d *Daemon) CtrStdin(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	cmd := d.CtrCommand(ctx, args...)
	cmd.Stdin = stdin
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), errOut.String(), fmt.Errorf("ctr %s: %w: %s",
			strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), errOut.String(), nil
}

// ImportBusybox imports the busybox test image of internal/ociimage into the
// daemon, unpacked into its snapshotter, and returns its reference
// (BusyboxRef). The import happens once per daemon; later calls return the
// same reference, or fail t the way the first call did.
func (d *Daemon) ImportBusybox(t testing.TB) (ref string) {
	t.Helper()
	d.importMu.Lock()
	defer d.importMu.Unlock()
	if d.importRef == "" && d.importErr == nil {
		began := time.Now()
		d.importErr = d.importBusybox()
		if d.importErr == nil {
			d.importRef = BusyboxRef
			t.Logf("containerdtest: imported %s in %v", BusyboxRef, time.Since(began).Round(time.Millisecond))
		}
	}
	if d.importErr != nil {
		t.Fatalf("containerdtest: import busybox: %v", d.importErr)
	}
	return d.importRef
}

func (d *Daemon) importBusybox() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var layout bytes.Buffer
	if err := ociimage.WriteBusybox(ctx, &layout, BusyboxRef); err != nil {
		return err
	}
	if _, _, err := d.CtrStdin(ctx, &layout, "images", "import", "-"); err != nil {
		return err
	}
	// ctr names an OCI image after the layout's annotation; a missing name
	// would mean the layout and ctr disagree, which `ctr run` would only
	// report as "image not found".
	names, _, err := d.Ctr(ctx, "images", "list", "--quiet")
	if err != nil {
		return err
	}
	for _, n := range strings.Fields(names) {
		if n == BusyboxRef {
			return nil
		}
	}
	return fmt.Errorf("ctr imported the layout, but no image is named %s (images: %q)", BusyboxRef, names)
}
