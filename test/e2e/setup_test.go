// Package e2e runs joey's shim under a real containerd 2.4.2 with ctr, the
// way a user would: `ctr run --runtime io.containerd.joey.v2`. Every
// container is a VM booted from the guest image (JOEY_TEST_IMAGE), so the
// tests share VMs where the behaviour allows.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/test/containerdtest"
)

const runtimeName = "io.containerd.joey.v2"

var (
	shimOnce sync.Once
	shimDir  string
	shimErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shimDir != "" {
		os.RemoveAll(shimDir)
	}
	os.Exit(code)
}

// shimBinDir builds containerd-shim-joey-v2 from this repository, once per
// test binary, and returns the directory holding it.
func shimBinDir(t testing.TB) string {
	t.Helper()
	shimOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			shimErr = err
			return
		}
		dir, err := os.MkdirTemp("", "joey-e2e-bin-")
		if err != nil {
			shimErr = err
			return
		}
		shimDir = dir
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		began := time.Now()
		cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, "containerd-shim-joey-v2"), "./cmd/containerd-shim-joey-v2")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			shimErr = fmt.Errorf("build the shim: %v\n%s", err, out)
			return
		}
		t.Logf("built containerd-shim-joey-v2 in %v", time.Since(began).Round(time.Millisecond))
	})
	if shimErr != nil {
		t.Fatal(shimErr)
	}
	return shimDir
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// env is a private containerd whose joey shim uses a private state
// directory and the test's guest image.
type env struct {
	d        *containerdtest.Daemon
	ref      string
	stateDir string // joey's runtime.state_dir
}

// newEnv starts containerd with the joey shim on its PATH and imports the
// busybox image. It skips (or fails under JOEY_REQUIRE_ALL=1) where the
// tests cannot run.
func newEnv(t testing.TB) *env {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireQEMU(t)
	image := testutil.GuestImage(t)
	bin := shimBinDir(t)

	// Short: QEMU's and the agent's sockets live under it.
	root, err := os.MkdirTemp("", "joey-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the daemon's teardown, so it runs after it.
	t.Cleanup(func() { os.RemoveAll(root) })
	e := &env{stateDir: filepath.Join(root, "state")}
	cfg := fmt.Sprintf("[runtime]\nstate_dir = %q\n\n[image]\ndir = %q\n", e.stateDir, image)
	cfgPath := filepath.Join(root, "joey.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.checkNothingLeft(t, root) })
	e.d = containerdtest.Start(t, containerdtest.Options{
		ExtraPath: []string{bin},
		Env:       []string{"JOEY_CONFIG=" + cfgPath},
	})
	if dir := os.Getenv("JOEY_E2E_KEEP_LOGS"); dir != "" {
		t.Cleanup(func() {
			data, _ := os.ReadFile(e.d.LogPath())
			os.WriteFile(filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".log"), data, 0o644)
		})
	}
	e.ref = e.d.ImportBusybox(t)
	return e
}

func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// run is `ctr run --rm` of the busybox image with joey; it returns stdout,
// stderr and ctr's exit code.
func (e *env) run(t *testing.T, id string, flags []string, cmd ...string) (stdout, stderr string, code int) {
	t.Helper()
	return e.runStdin(t, nil, id, flags, cmd...)
}

func (e *env) runStdin(t *testing.T, stdin *strings.Reader, id string, flags []string, cmd ...string) (stdout, stderr string, code int) {
	t.Helper()
	testutil.CountVM(t)
	args := append([]string{"run", "--rm", "--runtime", runtimeName}, flags...)
	args = append(args, e.ref, id)
	args = append(args, cmd...)
	ctx := testContext(t, 3*time.Minute)
	var out, errOut strings.Builder
	c := e.d.CtrCommand(ctx, args...)
	if stdin != nil {
		c.Stdin = stdin
	}
	c.Stdout = &out
	c.Stderr = &errOut
	began := time.Now()
	err := c.Run()
	t.Logf("ctr run %s: %v", id, time.Since(began).Round(time.Millisecond))
	if err != nil {
		exitErr, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("ctr run %s: %v", id, err)
		}
		return out.String(), errOut.String(), exitErr.ExitCode()
	}
	return out.String(), errOut.String(), 0
}

// ctr runs ctr and fails the test on error.
func (e *env) ctr(t testing.TB, args ...string) string {
	t.Helper()
	out, _, err := e.d.Ctr(testContext(t, 2*time.Minute), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runDetached starts a long-running container with `ctr run -d`.
func (e *env) runDetached(t testing.TB, id string, flags []string, cmd ...string) {
	t.Helper()
	testutil.CountVM(t)
	args := append([]string{"run", "-d", "--runtime", runtimeName}, flags...)
	args = append(args, e.ref, id)
	args = append(args, cmd...)
	began := time.Now()
	e.ctr(t, args...)
	t.Logf("ctr run -d %s: %v", id, time.Since(began).Round(time.Millisecond))
}

// taskStatus returns the PID and STATUS columns of `ctr task ls` for id.
func (e *env) taskStatus(t *testing.T, id string) (pid, status string) {
	t.Helper()
	for _, line := range strings.Split(e.ctr(t, "task", "ls"), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == id {
			return f[1], f[2]
		}
	}
	return "", ""
}

// removeTask kills and deletes a detached container's task and the
// container.
func (e *env) removeTask(t testing.TB, id string) {
	t.Helper()
	e.ctr(t, "task", "rm", "-f", id)
	e.ctr(t, "container", "rm", id)
}

// checkNothingLeft runs after the daemon's teardown, which deleted whatever
// tasks the test left: no VMM may still run for joey's state directory, no
// sandbox state may remain and nothing may stay mounted under it. What it
// finds fails the test and is then removed, so one leak does not spill
// into the next test.
func (e *env) checkNothingLeft(t testing.TB, root string) {
	for _, p := range processesMentioning(root) {
		t.Errorf("process left running: %s", p)
		if pid, err := strconv.Atoi(strings.SplitN(p, ":", 2)[0]); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	namespaces, _ := os.ReadDir(e.stateDir)
	for _, ns := range namespaces {
		sandboxes, _ := os.ReadDir(filepath.Join(e.stateDir, ns.Name()))
		for _, sb := range sandboxes {
			t.Errorf("sandbox state left: %s", filepath.Join(e.stateDir, ns.Name(), sb.Name()))
		}
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
	if err != nil {
		t.Error(err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	for _, m := range mounts {
		t.Errorf("mount left: %s (%s)", m.Mountpoint, m.FSType)
		unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
	}
}
