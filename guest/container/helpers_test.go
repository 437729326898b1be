package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/guest/reaper"
	"github.com/joeyrt/joey/internal/testutil"
)

// testCgroupParent keeps the tests' cgroups apart from anything else's.
const testCgroupParent = "/joey-test"

// testReaper is the test binary's one wait loop. Once it exists nothing in
// the tests may use exec.Cmd.Wait: it would race with the reaper.
var testReaper *reaper.Reaper

func TestMain(m *testing.M) {
	// libcontainer re-executes this test binary as each container's init.
	MaybeInit()
	r, err := reaper.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testReaper = r
	code := m.Run()
	r.Close()
	// The per-container cgroups are gone (tests check that); drop their
	// parents too, which only succeeds if they are empty.
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + testCgroupParent)
	for _, d := range append(dirs, "/sys/fs/cgroup"+testCgroupParent) {
		os.Remove(d)
	}
	os.Exit(code)
}

// requireContainers skips (or, under JOEY_REQUIRE_ALL=1, fails) tests that
// start real containers.
func requireContainers(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		testutil.Unavailable(t, "needs /bin/busybox (apt-get install busybox-static) for the container rootfs")
	}
}

// newTestManager returns a manager whose containers must all be gone when
// the test ends.
func newTestManager(t *testing.T, opts Options) *Manager {
	t.Helper()
	if opts.CgroupParent == "" {
		opts.CgroupParent = testCgroupParent
	}
	m, err := NewManager(filepath.Join(t.TempDir(), "state"), testReaper, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close manager: %v", err)
		}
	})
	return m
}

var applets = []string{
	"sh", "echo", "cat", "sleep", "id", "ls", "pwd", "env", "stty", "tty",
	"grep", "hostname", "tail", "true", "false", "kill", "head", "wc",
}

// busyboxRootfs builds a minimal rootfs: a static busybox and its applets.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// testSpec is libcontainer's example spec on a fresh busybox rootfs,
// running args without a terminal.
func testSpec(t *testing.T, args ...string) *specs.Spec {
	t.Helper()
	s := specconv.Example()
	s.Root.Path = busyboxRootfs(t)
	s.Process.Terminal = false
	s.Process.Args = args
	s.Process.Env = []string{"PATH=/bin"}
	s.Hostname = "joeytest"
	return s
}

var idSeq atomic.Int64

var nonIDChars = regexp.MustCompile(`[^\w]+`)

// uniqueID names a container after its test, unique across runs.
func uniqueID(t *testing.T) string {
	name := nonIDChars.ReplaceAllString(t.Name(), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	return fmt.Sprintf("%s-%d-%d", name, os.Getpid(), idSeq.Add(1))
}

// cgroupDirs lists the directories of cgroup path on this host, v1 or v2.
func cgroupDirs(path string) []string {
	var found []string
	cands, _ := filepath.Glob("/sys/fs/cgroup/*" + path)
	for _, d := range append(cands, "/sys/fs/cgroup"+path) {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			found = append(found, d)
		}
	}
	return found
}

// readAll reads r to EOF, failing the test after 10 s.
func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	out, err := readWithin(r, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readWithin reads r to EOF or gives up after d; goroutines that cannot call
// t.Fatal use it directly.
func readWithin(r io.Reader, d time.Duration) (string, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(r)
		ch <- result{b, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			return string(res.b), fmt.Errorf("read: %w", res.err)
		}
		return string(res.b), nil
	case <-time.After(d):
		return "", fmt.Errorf("no EOF within %v", d)
	}
}

// streamReader collects output in the background, for output that never
// ends on its own (a terminal).
type streamReader struct {
	chunks chan []byte
	buf    strings.Builder
}

func newStreamReader(r io.Reader) *streamReader {
	s := &streamReader{chunks: make(chan []byte, 64)}
	go func() {
		defer close(s.chunks)
		for {
			b := make([]byte, 4096)
			n, err := r.Read(b)
			if n > 0 {
				s.chunks <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	return s
}

// until reads until the output so far contains want, and returns it all.
func (s *streamReader) until(t *testing.T, want string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(s.buf.String(), want) {
		select {
		case b, ok := <-s.chunks:
			if !ok {
				t.Fatalf("output ended without %q; got %q", want, s.buf.String())
			}
			s.buf.Write(b)
		case <-deadline:
			t.Fatalf("no %q within 10s; got %q", want, s.buf.String())
		}
	}
	return s.buf.String()
}

// waitExit waits up to 10 s for a process's exit.
func waitExit(t *testing.T, m *Manager, id, execID string) ExitStatus {
	t.Helper()
	ctx, cancel := contextWithTimeout(10 * time.Second)
	defer cancel()
	st, err := m.Wait(ctx, id, execID)
	if err != nil {
		t.Fatalf("wait %s/%s: %v", id, execID, err)
	}
	return st
}

// mustErr fails unless err wraps want and its text mentions each of words.
func mustErr(t *testing.T, err, want error, words ...string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want one wrapping %q", err, want)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("err = %q, want it to mention %q", err, w)
		}
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
