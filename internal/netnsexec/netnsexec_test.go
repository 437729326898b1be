package netnsexec_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/joeyrt/joey/internal/netnsexec"
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

func TestRunEntersTheNamespaceAndLeavesTheCallerAlone(t *testing.T) {
	path := testutil.NewNetNS(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadNetNS(t)
	var inside string
	if err := netnsexec.Run(path, func() error { inside = threadNetNS(t); return nil }); err != nil {
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
	if err := netnsexec.Run("", func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("netnsexec.Run(\"\") = %v, ran %v", err, ran)
	}
	if err := netnsexec.Run(filepath.Join(t.TempDir(), "absent"), func() error { t.Fatal("fn ran"); return nil }); err == nil {
		t.Fatal("Run with a missing namespace file succeeded")
	}
}
