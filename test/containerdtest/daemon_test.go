package containerdtest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/joeyrt/joey/internal/testutil"
)

// requireRunc: the harness proves itself with runc, the reference runtime,
// so that a failure here is the harness's and not the joey shim's.
func requireRunc(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("runc"); err != nil {
		testutil.Unavailable(t, "runc is not installed (scripts/deps.sh installs it)")
	}
}

func ctrRun(t *testing.T, d *Daemon, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	out, _, err := d.Ctr(ctx, append([]string{"run", "--rm", "--runtime", "io.containerd.runc.v2"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ctr run %s: %v", strings.Join(args, " "), time.Since(began).Round(time.Millisecond))
	return strings.TrimSpace(out)
}

func TestBusyboxRunsWithRunc(t *testing.T) {
	requireRunc(t)
	d := Start(t, Options{})
	ref := d.ImportBusybox(t)
	if ref != BusyboxRef {
		t.Fatalf("ImportBusybox = %q, want %q", ref, BusyboxRef)
	}
	if again := d.ImportBusybox(t); again != ref {
		t.Fatalf("second ImportBusybox = %q", again)
	}

	if out := ctrRun(t, d, ref, "t1", "echo", "hello"); out != "hello" {
		t.Errorf("echo hello printed %q", out)
	}
	// The image's /etc/passwd is what the runtime resolves users with.
	if out := ctrRun(t, d, "--user", "joey", ref, "t2", "sh", "-c", "id -u; id -g; echo $PATH; ls -ld /tmp"); !strings.HasPrefix(out, "1000\n1000\n/usr/local/sbin:") || !strings.Contains(out, "drwxrwxrwt") {
		t.Errorf("image as joey:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _, err := d.CtrStdin(ctx, strings.NewReader("from stdin\n"),
		"run", "--rm", "--runtime", "io.containerd.runc.v2", ref, "t3", "sh", "-c", "read l; echo got $l")
	if err != nil || strings.TrimSpace(out) != "got from stdin" {
		t.Errorf("stdin: %q, %v", out, err)
	}
	if left, _, err := d.Ctr(ctx, "containers", "list", "--quiet"); err != nil || strings.TrimSpace(left) != "" {
		t.Errorf("containers after --rm runs: %q, %v", left, err)
	}
}

func TestNativeSnapshotter(t *testing.T) {
	requireRunc(t)
	d := Start(t, Options{Snapshotter: "native"})
	if out := ctrRun(t, d, d.ImportBusybox(t), "n1", "echo", "native"); out != "native" {
		t.Errorf("echo native printed %q", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	snaps, _, err := d.Ctr(ctx, "snapshots", "--snapshotter", "native", "list")
	if err != nil || !strings.Contains(snaps, "Committed") {
		t.Errorf("the image was not unpacked into native: %q, %v", snaps, err)
	}
}

// TestTeardownDeletesLeftovers leaves a running container behind and checks
// that the daemon's teardown removed its process, its shim and its mounts.
func TestTeardownDeletesLeftovers(t *testing.T) {
	requireRunc(t)
	var d *Daemon
	var pid int
	t.Run("leave", func(t *testing.T) {
		d = Start(t, Options{})
		ref := d.ImportBusybox(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, _, err := d.Ctr(ctx, "run", "--detach", "--runtime", "io.containerd.runc.v2", ref, "left", "sleep", "600"); err != nil {
			t.Fatal(err)
		}
		out, _, err := d.Ctr(ctx, "tasks", "list")
		if err != nil {
			t.Fatal(err)
		}
		// TASK PID STATUS
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "left" {
				pid, _ = strconv.Atoi(f[1])
			}
		}
		if pid == 0 {
			t.Fatalf("no pid for task left in:\n%s", out)
		}
		if shims, _ := processesWithArg("-address", d.Address()); len(shims) != 1 {
			t.Fatalf("want 1 shim of the daemon running, found %v", shims)
		}
		if points, _ := mountsUnder(d.StateDir()); len(points) == 0 {
			t.Fatal("the running container's rootfs is not mounted under the state dir")
		}
		if cgroups, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", d.Namespace(), "left")); len(cgroups) == 0 {
			t.Fatalf("the running container has no cgroup /%s/left", d.Namespace())
		}
	})
	if t.Failed() || d == nil || pid == 0 {
		return // the subtest said why
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("container process %d still exists after teardown (kill 0: %v)", pid, err)
	}
	if shims, err := processesWithArg("-address", d.Address()); err != nil || len(shims) > 0 {
		t.Errorf("shims after teardown: %v, %v", shims, err)
	}
	if points, err := mountsUnder(d.root, d.state); err != nil || len(points) > 0 {
		t.Errorf("mounts after teardown: %v, %v", points, err)
	}
	if running(d.done) {
		t.Error("containerd still running after teardown")
	}
	if _, err := os.Stat(filepath.Join(runcRoot, d.Namespace())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("runc state of namespace %s after teardown: %v", d.Namespace(), err)
	}
	if cgroups, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", d.Namespace())); len(cgroups) > 0 {
		t.Errorf("cgroups after teardown: %v", cgroups)
	}
}
