package netnsexec

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/testutil"
)

func threadNetNS(t *testing.T) string {
	t.Helper()
	s, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newNetNS makes a network namespace bound to a file under t.TempDir().
func newNetNS(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ns")
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(path, unix.MNT_DETACH) })
	return path
}

func TestRunEntersTheNamespaceAndLeavesTheCallerAlone(t *testing.T) {
	testutil.RequireRoot(t)
	path := newNetNS(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadNetNS(t)
	var inside string
	if err := Run(path, func() error { inside = threadNetNS(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside == before {
		t.Fatalf("fn ran in the caller's namespace %s", before)
	}
	if got := threadNetNS(t); got != before {
		t.Fatalf("caller's thread moved from %s to %s", before, got)
	}
}

func TestRunWithoutAPathRunsInPlaceAndABadPathFails(t *testing.T) {
	ran := false
	if err := Run("", func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("Run(\"\") = %v, ran %v", err, ran)
	}
	if err := Run(filepath.Join(t.TempDir(), "absent"), func() error { t.Fatal("fn ran"); return nil }); err == nil {
		t.Fatal("Run with a missing namespace file succeeded")
	}
}
