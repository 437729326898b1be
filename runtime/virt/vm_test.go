package virt

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/runtime"
)

// TestSandboxRunsContainersAndShutdownLeavesNothing boots one VM and runs
// through a container's life in it: stdio both ways, exit codes, an exec,
// a kill, volumes, stats, deletion; then Shutdown must leave no trace.
func TestSandboxRunsContainersAndShutdownLeavesNothing(t *testing.T) {
	cfg := vmConfigForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bundle := busyboxBundle(t)
	vols := t.TempDir()
	rwDir, roDir := filepath.Join(vols, "rw"), filepath.Join(vols, "ro")
	for _, d := range []string{rwDir, roDir} {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(roDir, "f"), []byte("original"), 0o666); err != nil {
		t.Fatal(err)
	}

	const id = "sb-run"
	first := containerSpec("sh", "-c", "echo out; echo err >&2; read x; echo got $x; exit 3")
	events := make(chan runtime.Event, 8)
	testutil.CountVM(t)
	start := time.Now()
	sb, err := New(cfg).CreateSandbox(ctx, runtime.SandboxConfig{
		ID: id, Namespace: "default", Spec: first, Bundle: bundle, Config: cfg,
		Events: func(e runtime.Event) { events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sandbox created in %v", time.Since(start).Round(time.Millisecond))
	defer sb.Shutdown(context.Background())
	vmmPid := sb.Pid()
	if vmmPid == os.Getpid() || processGone(vmmPid) {
		t.Fatalf("Pid() = %d, want the running QEMU's pid", vmmPid)
	}
	sandboxDir := filepath.Join(cfg.Runtime.StateDir, "default", id)

	t.Run("init with stdio and exit code", func(t *testing.T) {
		stdinR, stdinW := io.Pipe()
		defer stdinW.Close()
		var stdout, stderr syncBuffer
		c, err := sb.CreateContainer(ctx, runtime.ContainerConfig{
			ID: id, Bundle: bundle, Spec: first,
			IO: runtime.IO{Stdin: stdinR, Stdout: &stdout, Stderr: &stderr},
		})
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := c.State(""); st.Status != runtime.StatusCreated || st.Pid != vmmPid {
			t.Fatalf("state after create: %+v", st)
		}
		if err := c.Start(ctx, ""); err != nil {
			t.Fatal(err)
		}
		// Like `ctr run`, stdin is never closed: the line must get through.
		if _, err := io.WriteString(stdinW, "hi\n"); err != nil {
			t.Fatal(err)
		}
		st, err := c.Wait(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if st.Code != 3 {
			t.Errorf("exit code %d, want 3", st.Code)
		}
		if got := stdout.String(); got != "out\ngot hi\n" {
			t.Errorf("stdout %q, want %q", got, "out\ngot hi\n")
		}
		if got := stderr.String(); got != "err\n" {
			t.Errorf("stderr %q, want %q", got, "err\n")
		}
		if st, _ := c.State(""); st.Status != runtime.StatusStopped || st.Exit == nil || st.Exit.Code != 3 {
			t.Errorf("state after exit: %+v", st)
		}
		if err := c.Kill(ctx, "", syscall.SIGTERM, false); !errdefs.IsNotFound(err) {
			t.Errorf("kill of an exited process: %v, want ErrNotFound", err)
		}
		// Left for Shutdown to remove.
	})

	t.Run("overlay rootfs, volumes, exec, stats, kill, delete", func(t *testing.T) {
		snap := t.TempDir()
		upper, work := filepath.Join(snap, "upper"), filepath.Join(snap, "work")
		for _, d := range []string{upper, work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		spec := containerSpec("sleep", "1000")
		spec.Mounts = append(spec.Mounts,
			specs.Mount{Destination: "/rw", Type: "bind", Source: rwDir, Options: []string{"rbind", "rw"}},
			specs.Mount{Destination: "/ro", Type: "bind", Source: roDir, Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: "resolv.conf", Options: []string{"rbind", "ro"}},
		)
		if err := os.WriteFile(filepath.Join(bundle, "resolv.conf"), []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		const cid = "c2"
		c, err := sb.CreateContainer(ctx, runtime.ContainerConfig{
			ID: cid, Spec: spec, Bundle: bundle,
			Rootfs: []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
				"lowerdir=" + filepath.Join(bundle, "rootfs"), "upperdir=" + upper, "workdir=" + work,
			}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if ids := sb.Containers(); len(ids) != 2 {
			t.Errorf("Containers() = %q, want both", ids)
		}

		var out syncBuffer
		script := `echo exec-out; cat /etc/resolv.conf; echo data > /rw/fromvm; ` +
			`echo x 2>/dev/null > /ro/f && echo ro-writable || echo ro-refused; ` +
			`touch /newfile 2>/dev/null && echo root-writable || echo root-refused; exit 7`
		p := &specs.Process{Args: []string{"sh", "-c", script}, Cwd: "/", Env: spec.Process.Env}
		if err := c.Exec(ctx, "e1", p, runtime.IO{Stdout: &out}); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx, "e1"); err != nil {
			t.Fatal(err)
		}
		st, err := c.Wait(ctx, "e1")
		if err != nil {
			t.Fatal(err)
		}
		if st.Code != 7 {
			t.Errorf("exec exit code %d, want 7", st.Code)
		}
		if want := "exec-out\nnameserver 192.0.2.53\nro-refused\nroot-refused\n"; out.String() != want {
			t.Errorf("exec output %q, want %q", out.String(), want)
		}
		if got, err := os.ReadFile(filepath.Join(rwDir, "fromvm")); err != nil || string(got) != "data\n" {
			t.Errorf("rw volume on the host: %q, %v", got, err)
		}
		if got, _ := os.ReadFile(filepath.Join(roDir, "f")); string(got) != "original" {
			t.Errorf("ro volume changed on the host: %q", got)
		}
		if _, err := c.Delete(ctx, "e1"); err != nil {
			t.Errorf("delete exec: %v", err)
		}

		// A terminal exec, waited for twice at once.
		var tty syncBuffer
		p = &specs.Process{Terminal: true, Args: []string{"sh", "-c", "tty; exit 4"}, Cwd: "/", Env: spec.Process.Env}
		if err := c.Exec(ctx, "e2", p, runtime.IO{Stdout: &tty, Terminal: true}); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx, "e2"); err != nil {
			t.Fatal(err)
		}
		if err := c.ResizePty(ctx, "e2", 100, 30); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("resize: %v", err)
		}
		codes := make(chan uint32, 2)
		for range 2 {
			go func() {
				st, _ := c.Wait(ctx, "e2")
				codes <- st.Code
			}()
		}
		if a, b := <-codes, <-codes; a != 4 || b != 4 {
			t.Errorf("two waiters got %d and %d, want 4 and 4", a, b)
		}
		if !strings.HasPrefix(tty.String(), "/dev/pts/") {
			t.Errorf("terminal exec printed %q, want its /dev/pts/N", tty.String())
		}

		if err := c.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		if st, _ := c.State(""); st.Status != runtime.StatusPaused {
			t.Errorf("state after Pause: %s", st.Status)
		}
		if err := c.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		if st, _ := c.State(""); st.Status != runtime.StatusRunning {
			t.Errorf("state after Resume: %s", st.Status)
		}
		if err := c.Update(ctx, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(77))}}); err != nil {
			t.Fatal(err)
		}

		stats, err := c.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stats.CPU == nil || stats.CPU.UsageUsec == 0 || stats.Memory == nil || stats.Memory.Usage == 0 ||
			stats.Pids == nil || stats.Pids.Current == 0 {
			t.Errorf("stats have zeros: %+v", stats)
		}
		if stats.Pids != nil && stats.Pids.Limit != 77 {
			t.Errorf("pids limit %d after Update, want 77", stats.Pids.Limit)
		}
		if pids, err := c.Pids(ctx); err != nil || len(pids) == 0 {
			t.Errorf("Pids() = %v, %v", pids, err)
		}

		if _, err := c.Delete(ctx, ""); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("delete of a running container: %v, want ErrFailedPrecondition", err)
		}
		if err := c.Kill(ctx, "", syscall.SIGKILL, false); err != nil {
			t.Fatal(err)
		}
		if st, err := c.Wait(ctx, ""); err != nil || st.Code != 137 {
			t.Errorf("wait after SIGKILL: %+v, %v; want 137", st, err)
		}
		if _, err := c.Delete(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if left := mountsUnder(t, filepath.Join(sandboxDir, "shared.rw", cid)); len(left) != 0 {
			t.Errorf("container's mounts left after Delete: %q", left)
		}
		if _, err := os.Stat(filepath.Join(sandboxDir, "shared.rw", cid)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("container's share directory left after Delete: %v", err)
		}
		if _, err := sb.Container(cid); !errdefs.IsNotFound(err) {
			t.Errorf("deleted container still there: %v", err)
		}
	})

	t.Run("oom kill is reported", func(t *testing.T) {
		// The shell outlives the OOM-killed dd: the guest's OOM watch
		// (libcontainer's) stops once the cgroup is empty, and can miss
		// the kill of a container's only process.
		var out syncBuffer
		spec := containerSpec("sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd=$?; sleep 1000")
		spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(16 << 20)), Swap: ptr(int64(16 << 20))}}
		c, err := sb.CreateContainer(ctx, runtime.ContainerConfig{ID: "oom", Bundle: bundle, Spec: spec, IO: runtime.IO{Stdout: &out}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx, ""); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-events:
			if e.Kind != runtime.EventOOM || e.ContainerID != "oom" {
				t.Errorf("event %+v, want EventOOM for container oom", e)
			}
		case <-time.After(30 * time.Second):
			t.Error("no EventOOM")
		}
		for deadline := time.Now().Add(30 * time.Second); out.String() == "" && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		if out.String() != "dd=137\n" {
			t.Errorf("output %q, want dd=137 (killed by the OOM killer)", out.String())
		}
		if err := c.Kill(ctx, "", syscall.SIGKILL, false); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Wait(ctx, ""); err != nil {
			t.Fatal(err)
		}
	})

	start = time.Now()
	if err := sb.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("shutdown in %v", time.Since(start).Round(time.Millisecond))
	if !processGone(vmmPid) {
		t.Errorf("QEMU (pid %d) still running after Shutdown", vmmPid)
	}
	if left := mountsUnder(t, cfg.Runtime.StateDir); len(left) != 0 {
		t.Errorf("mounts left after Shutdown: %q", left)
	}
	if _, err := os.Stat(sandboxDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left after Shutdown: %v", err)
	}
	if err := sb.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// TestVMDeathEndsProcessesAndCleanupFreesEverything kills QEMU under a
// running container: Wait must return 255 and EventVMExited fire; then a
// fresh handler, knowing only the persisted state (the shim "died"),
// frees what is left.
func TestVMDeathEndsProcessesAndCleanupFreesEverything(t *testing.T) {
	cfg := vmConfigForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bundle := busyboxBundle(t)
	events := make(chan runtime.Event, 8)
	spec := containerSpec("sleep", "1000")
	const id = "sb-die"
	testutil.CountVM(t)
	sb, err := New(cfg).CreateSandbox(ctx, runtime.SandboxConfig{
		ID: id, Namespace: "default", Spec: spec, Bundle: bundle, Config: cfg,
		Events: func(e runtime.Event) { events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := sb.CreateContainer(ctx, runtime.ContainerConfig{ID: id, Bundle: bundle, Spec: spec})
	if err != nil {
		sb.Shutdown(ctx)
		t.Fatal(err)
	}
	if err := c.Start(ctx, ""); err != nil {
		sb.Shutdown(ctx)
		t.Fatal(err)
	}
	sandboxDir := filepath.Join(cfg.Runtime.StateDir, "default", id)
	if len(mountsUnder(t, sandboxDir)) == 0 {
		t.Fatal("no mounts under the sandbox directory while it runs")
	}

	vmm := sb.Pid()
	if err := syscall.Kill(vmm, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx, "")
	if err != nil || st.Code != vmExitedStatus {
		t.Fatalf("Wait after the VM died: %+v, %v; want %d", st, err, vmExitedStatus)
	}
	select {
	case e := <-events:
		if e.Kind != runtime.EventVMExited || e.Err == nil {
			t.Errorf("event %+v, want EventVMExited with the reason", e)
		}
	case <-ctx.Done():
		t.Fatal("no EventVMExited")
	}

	// The shim is gone; only the state is left.
	if err := New(cfg).Cleanup(ctx, "default", id); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, cfg.Runtime.StateDir); len(left) != 0 {
		t.Errorf("mounts left after Cleanup: %q", left)
	}
	if _, err := os.Stat(sandboxDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left after Cleanup: %v", err)
	}
	if err := New(cfg).Cleanup(ctx, "default", id); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}

// TestFailedCreateSandboxLeavesNothing: a VM that cannot start must not
// leave a process, a mount or a state directory.
func TestFailedCreateSandboxLeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireQEMU(t)
	img := testutil.GuestImage(t)
	vmConfigForTest(t) // registers the driver
	junk := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a kernel\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		kernel string
		want   string
	}{
		{"kernel missing", "/nonexistent/vmlinux", "/nonexistent/vmlinux"},
		{"kernel QEMU cannot load", junk, "start vm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, img)
			cfg.Image.Kernel = tt.kernel
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := New(cfg).CreateSandbox(ctx, runtime.SandboxConfig{
				ID: "sb-fail", Namespace: "default", Spec: containerSpec("true"), Config: cfg,
			})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CreateSandbox: %v, want an error containing %q", err, tt.want)
			}
			t.Logf("CreateSandbox: %v", err)
			if left := mountsUnder(t, cfg.Runtime.StateDir); len(left) != 0 {
				t.Errorf("mounts left: %q", left)
			}
			if _, err := os.Stat(filepath.Join(cfg.Runtime.StateDir, "default", "sb-fail")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state directory left: %v", err)
			}
			if ps := processesMentioning(t, cfg.Runtime.StateDir); len(ps) != 0 {
				t.Errorf("processes left: %q", ps)
			}
		})
	}
}
