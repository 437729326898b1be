package containerdtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logTail is how much of containerd's log a failed test shows.
const logTail = 64 << 10

// runcRoot is where containerd-shim-runc-v2 tells runc to keep its state
// (runc --root), per namespace.
const runcRoot = "/run/containerd/runc"

// Grace periods of the teardown. A joey task's delete stops a VM, which under
// TCG takes seconds, so the task step is generous.
const (
	taskDeleteTimeout = 60 * time.Second
	stopTimeout       = 15 * time.Second
	shimExitTimeout   = 10 * time.Second
)

// teardown is registered by Start. It never stops early: each step runs even
// when an earlier one failed, so that a broken shim does not leave the host
// littered.
func (d *Daemon) teardown(t testing.TB) {
	// leak reports what the shim under test left behind. After a failure it is
	// expected and only logged, otherwise it fails the test.
	leak := func(format string, args ...any) {
		if t.Failed() {
			t.Logf("containerdtest: "+format, args...)
		} else {
			t.Errorf("containerdtest: "+format, args...)
		}
	}

	if d.ready && running(d.done) {
		d.deleteLeftovers(t)
	}
	if err := d.stop(); err != nil {
		t.Errorf("containerdtest: %v", err)
	}
	if shims := d.waitShimsGone(shimExitTimeout); len(shims) > 0 {
		for _, p := range shims {
			below := descendants(p.pid)
			leak("shim still running %v after its daemon stopped, killing it and its processes %v: pid %d: %s",
				shimExitTimeout, below, p.pid, p.cmdline)
			for _, pid := range append(below, p.pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			waitGone(append(below, p.pid), shimExitTimeout)
		}
	}
	found, left := removeNamespaceCgroups(d.namespace)
	if len(found) > 0 {
		leak("container cgroups left in namespace %s: %s", d.namespace, strings.Join(found, ", "))
	}
	if len(left) > 0 {
		t.Errorf("containerdtest: remove cgroups: %s", strings.Join(left, "; "))
	}
	// runc keeps per-namespace state outside the daemon's directories; with
	// its tasks deleted, the namespace's directory is empty and goes too.
	if err := os.Remove(filepath.Join(runcRoot, d.namespace)); err != nil && !os.IsNotExist(err) {
		leak("runc state left: %v", err)
	}
	points, err := mountsUnder(d.root, d.state)
	if err != nil {
		t.Errorf("containerdtest: %v", err)
	}
	if len(points) > 0 {
		leak("mounts left under the daemon's directories: %s", strings.Join(points, ", "))
		if err := unmountAll(points); err != nil {
			t.Errorf("containerdtest: %v", err)
		}
	}
	if t.Failed() {
		d.printLog(t)
	}
}

// deleteLeftovers force-deletes the tasks and containers a test left in the
// daemon's namespace: deleting a task is what makes a shim stop its VM and
// exit.
func (d *Daemon) deleteLeftovers(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), taskDeleteTimeout)
	defer cancel()
	tasks, _, err := d.Ctr(ctx, "tasks", "list", "--quiet")
	if err != nil {
		t.Errorf("containerdtest: %v", err)
	}
	for _, id := range strings.Fields(tasks) {
		t.Logf("containerdtest: deleting task %s left by the test", id)
		if _, _, err := d.Ctr(ctx, "tasks", "delete", "--force", id); err != nil {
			t.Errorf("containerdtest: %v", err)
		}
	}
	containers, _, err := d.Ctr(ctx, "containers", "list", "--quiet")
	if err != nil {
		t.Errorf("containerdtest: %v", err)
	}
	for _, id := range strings.Fields(containers) {
		t.Logf("containerdtest: deleting container %s left by the test", id)
		if _, _, err := d.Ctr(ctx, "containers", "delete", id); err != nil {
			t.Errorf("containerdtest: %v", err)
		}
	}
}

// stop ends containerd: SIGTERM lets it close its databases; SIGKILL follows
// when it does not exit in time.
func (d *Daemon) stop() error {
	if !running(d.done) {
		return nil
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && running(d.done) {
		return fmt.Errorf("stop containerd: %w", err)
	}
	select {
	case <-d.done:
		return nil
	case <-time.After(stopTimeout):
	}
	d.cmd.Process.Kill()
	select {
	case <-d.done:
		return fmt.Errorf("containerd ignored SIGTERM for %v and was killed", stopTimeout)
	case <-time.After(stopTimeout):
		return fmt.Errorf("stop containerd: pid %d did not exit after SIGKILL", d.cmd.Process.Pid)
	}
}

// waitShimsGone waits for the daemon's shims to exit and returns those that
// did not. A shim exits on its own once its last task is deleted.
func (d *Daemon) waitShimsGone(timeout time.Duration) []process {
	deadline := time.Now().Add(timeout)
	for {
		shims, err := processesWithArg("-address", d.address)
		if err != nil || len(shims) == 0 || time.Now().After(deadline) {
			return shims
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// printLog shows the end of containerd's log in the test output.
func (d *Daemon) printLog(t testing.TB) {
	f, err := os.Open(d.logPath)
	if err != nil {
		t.Logf("containerdtest: containerd log: %v", err)
		return
	}
	defer f.Close()
	var skipped int64
	if info, err := f.Stat(); err == nil && info.Size() > logTail {
		skipped = info.Size() - logTail
		f.Seek(skipped, io.SeekStart)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		t.Logf("containerdtest: containerd log: %v", err)
	}
	note := ""
	if skipped > 0 {
		note = fmt.Sprintf(" (its last %d KiB; %d bytes before them are not shown)", logTail>>10, skipped)
	}
	t.Logf("containerdtest: containerd log %s%s:\n%s", d.logPath, note, data)
}

// waitGone waits until none of pids exists any more, or timeout passes.
func waitGone(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func running(done <-chan struct{}) bool {
	select {
	case <-done:
		return false
	default:
		return true
	}
}
