// Package mounttest helps the resource packages' root tests look at the
// host's mount table without trusting the code under test to do it.
package mounttest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Under returns the mount points at dir or below it, read straight from
// /proc/self/mountinfo. Only the test's own directory is looked at: other
// tests on the machine mount things too.
func Under(t testing.TB, dir string) []string {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

// Dir returns a fresh directory whose mounts are detached when the test
// ends, whatever the test left, so that a failing test cannot leave the
// machine with mounts in a removed temp directory.
func Dir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return
		}
		ms, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
		for i := len(ms) - 1; i >= 0; i-- {
			unix.Unmount(ms[i].Mountpoint, unix.MNT_DETACH)
		}
	})
	return dir
}

// Tmpfs mounts a small tmpfs at dir (created if needed).
func Tmpfs(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
}

// WriteFile writes data to p and fails the test on error.
func WriteFile(t testing.TB, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ReadFile returns p's content and fails the test on error.
func ReadFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
