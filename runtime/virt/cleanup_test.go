package virt

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/procutil"
	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/persist"
	"github.com/joeyrt/joey/persist/api"
	"github.com/joeyrt/joey/resource/hostmount"
	"github.com/joeyrt/joey/resource/sharefs"
)

// startGroup starts `sh` leading its own process group with a background
// child, as QEMU leads its group, and returns the shell and the child's pid.
func startGroup(t *testing.T) (*exec.Cmd, int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 1000 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	return cmd, child
}

func recorded(t *testing.T, pid int, name string) api.Process {
	t.Helper()
	st, err := procutil.StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	return api.Process{Name: name, Pid: pid, StartTime: st}
}

// TestCleanupFreesWhatTheStateRecords plays a shim that was SIGKILLed
// with its VMM still running and its mounts in place: Cleanup, knowing
// only the state, must kill the VMM's whole group (and nothing whose pid
// merely matches), unmount everything and remove the directory, without
// touching the files of a bound volume.
func TestCleanupFreesWhatTheStateRecords(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	cfg := testConfig(t, t.TempDir())
	store, err := persist.NewStore(cfg.Runtime.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := store.Dir("default", "sb")
	if err != nil {
		t.Fatal(err)
	}
	k := &stateKeeper{store: store, st: &api.SandboxState{ID: "sb", Namespace: "default", Status: api.SandboxRunning}}
	if err := k.update(ctx, func(*api.SandboxState) {}); err != nil {
		t.Fatal(err)
	}
	share := sharefs.New(dir)
	if err := share.Setup(ctx, k.recordSandboxMount); err != nil {
		t.Fatal(err)
	}
	cdir, err := share.ContainerDir("c1")
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(cdir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := k.rootfsRecorder("c1")(ctx, rootfs); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", rootfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	volSrc := t.TempDir()
	precious := filepath.Join(volSrc, "precious")
	if err := os.WriteFile(precious, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(cdir, "mounts", "0")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := k.containerMountRecorder("c1")(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if err := hostmount.Bind(volSrc, vol, true, false); err != nil {
		t.Fatal(err)
	}

	vmm, child := startGroup(t)
	decoy := exec.Command("sleep", "1000")
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { decoy.Process.Kill(); decoy.Wait() }()
	stale := recorded(t, decoy.Process.Pid, "virtiofsd")
	stale.StartTime++ // the pid now belongs to another process
	if err := k.update(ctx, func(st *api.SandboxState) {
		st.VMM.Process = recorded(t, vmm.Process.Pid, "qemu-system-x86_64")
		st.VMM.Helpers = []api.Process{stale}
	}); err != nil {
		t.Fatal(err)
	}
	if len(mountsUnder(t, dir)) < 4 {
		t.Fatalf("setup made only %q", mountsUnder(t, dir))
	}

	if err := New(cfg).Cleanup(ctx, "default", "sb"); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{vmm.Process.Pid, child} {
		if !processGone(pid) {
			t.Errorf("pid %d of the VMM's group still running", pid)
		}
	}
	if processGone(decoy.Process.Pid) {
		t.Error("Cleanup killed a process whose start time did not match the record")
	}
	if left := mountsUnder(t, cfg.Runtime.StateDir); len(left) != 0 {
		t.Errorf("mounts left: %q", left)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left: %v", err)
	}
	if got, err := os.ReadFile(precious); err != nil || string(got) != "data" {
		t.Errorf("a bound volume's file was touched: %q, %v", got, err)
	}
	if err := New(cfg).Cleanup(ctx, "default", "sb"); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}

func TestCleanupOfAnUnknownSandboxIsNil(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	if err := New(cfg).Cleanup(context.Background(), "default", "never-created"); err != nil {
		t.Fatal(err)
	}
}

func TestCleanupRejectsIDsThatLeaveTheStateDir(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	if err := New(cfg).Cleanup(context.Background(), "default", "../x"); err == nil {
		t.Fatal("Cleanup accepted ../x")
	}
}

func TestKillRecordedWaitsForTheProcessToGo(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	if err := killRecorded(context.Background(), recorded(t, cmd.Process.Pid, "sleep")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the process did not end")
	}
}
