// Package testutil holds the helpers every joey test uses to decide whether it
// can run here. Under JOEY_REQUIRE_ALL=1 (what `make test` sets) a test that
// would skip for lack of root, QEMU, the guest image or nested KVM fails instead,
// so the suite never goes green on skips.
package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/netnsexec"
)

// RequireAll reports whether missing prerequisites must fail tests.
func RequireAll() bool { return os.Getenv("JOEY_REQUIRE_ALL") == "1" }

// Unavailable skips t with reason, or fails it under JOEY_REQUIRE_ALL=1.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if RequireAll() {
		t.Fatalf("JOEY_REQUIRE_ALL=1 but this test cannot run: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (or fails) t unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// RequireQEMU returns the path of qemu-system-x86_64, or skips (fails) t.
func RequireQEMU(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		Unavailable(t, "qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
	}
	return p
}

// GuestImage returns the directory of a built guest image (vmlinuz, vmlinux,
// initrd.img, manifest.json) named by JOEY_TEST_IMAGE, or skips (fails) t.
// `make test` builds it once and exports the variable.
func GuestImage(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("JOEY_TEST_IMAGE")
	if dir == "" {
		Unavailable(t, "JOEY_TEST_IMAGE is not set: run `make test`, or `joey image build --out DIR` and export JOEY_TEST_IMAGE=DIR")
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		Unavailable(t, fmt.Sprintf("guest image at %s is incomplete: %v", dir, err))
	}
	return dir
}

// Run runs cmd, whose Stdout and Stderr it sets, and returns what it wrote
// and its exit code (-1 after a signal). It fails t when cmd cannot run.
func Run(t testing.TB, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v\n%s%s", cmd, err, o.String(), e.String())
	}
	return o.String(), e.String(), code
}

var countMu sync.Mutex

// CountVM records that a test booted a VM, so `make test` can print how many
// VMs the suite really ran. The count goes to the file named by
// JOEY_VM_COUNT_FILE, one line per boot.
func CountVM(t testing.TB) {
	t.Helper()
	path := os.Getenv("JOEY_VM_COUNT_FILE")
	if path == "" {
		return
	}
	countMu.Lock()
	defer countMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("count VM: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, t.Name())
}

// NewNetNS makes a network namespace of the test's own, pinned on a file
// under t.TempDir(), and returns its path. Cleanup unmounts it, which ends
// the namespace and everything in it once nothing uses it.
func NewNetNS(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	path := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := netnsexec.Create(path); err != nil {
		t.Fatalf("make network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", path, err)
		}
	})
	return path
}
