package e2e

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitStatus polls `ctr task ls` until id has status want.
func (e *env) waitStatus(t *testing.T, id, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		_, st := e.taskStatus(t, id)
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %q, want %s", id, st, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestLongRunningContainer drives one VM through what a running container
// is asked to do: exec, ps, metrics, pause and resume, a second container
// joining its sandbox, signals to an exec and to the init.
func TestLongRunningContainer(t *testing.T) {
	e := newEnv(t)
	// The init is PID 1 of its pid namespace, which ignores signals it has
	// no handler for; the trap makes SIGTERM end it.
	e.runDetached(t, "long", nil, "sh", "-c", "trap 'exit 143' TERM; while true; do sleep 1; done")
	pid, st := e.taskStatus(t, "long")
	if st != "RUNNING" {
		t.Fatalf("task long is %q", st)
	}
	vmm, err := os.ReadFile("/proc/" + pid + "/cmdline")
	if err != nil || !strings.Contains(string(vmm), "qemu") {
		t.Fatalf("task pid %s is not the VMM: %q, %v", pid, vmm, err)
	}

	out := e.ctr(t, "task", "exec", "--exec-id", "e1", "long", "sh", "-c", "echo exec-out; id -u")
	if out != "exec-out\n0\n" {
		t.Errorf("exec printed %q", out)
	}

	ps := e.ctr(t, "task", "ps", "long")
	if lines := strings.Split(strings.TrimSpace(ps), "\n"); len(lines) < 2 {
		t.Errorf("ctr task ps shows no process:\n%s", ps)
	}

	metrics := e.ctr(t, "task", "metrics", "long")
	for _, m := range []string{"pids.current", "memory.usage"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("ctr task metrics lacks %s:\n%s", m, metrics)
		}
	}

	e.ctr(t, "task", "pause", "long")
	e.waitStatus(t, "long", "PAUSED")
	e.ctr(t, "task", "resume", "long")
	e.waitStatus(t, "long", "RUNNING")
	if out := e.ctr(t, "task", "exec", "--exec-id", "e2", "long", "echo", "after-resume"); out != "after-resume\n" {
		t.Errorf("exec after resume printed %q", out)
	}

	t.Run("exec killed with SIGKILL", func(t *testing.T) {
		before := e.pidCount(t, "long")
		sleeper := e.d.CtrCommand(testContext(t, 2*time.Minute), "task", "exec", "--exec-id", "sleeper", "long", "sleep", "600")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for e.pidCount(t, "long") <= before {
			if time.Now().After(deadline) {
				t.Fatalf("the exec never showed up in ctr task ps:\n%s", e.ctr(t, "task", "ps", "long"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		e.ctr(t, "task", "kill", "--exec-id", "sleeper", "--signal", "SIGKILL", "long")
		err := sleeper.Wait()
		if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 137 {
			t.Errorf("ctr task exec of the killed process: %v, want exit status 137", err)
		}
	})

	t.Run("second container joins the sandbox", func(t *testing.T) {
		annotations := []string{
			"--annotation", "io.kubernetes.cri.container-type=container",
			"--annotation", "io.kubernetes.cri.sandbox-id=long",
		}
		began := time.Now()
		e.ctr(t, append(append([]string{"run", "-d", "--runtime", runtimeName}, annotations...),
			e.ref, "joined", "sleep", "600")...)
		t.Logf("second container in the running sandbox: %v", time.Since(began).Round(time.Millisecond))
		if jpid, st := e.taskStatus(t, "joined"); jpid != pid || st != "RUNNING" {
			t.Errorf("joined task: pid %s (want the sandbox's VMM %s), status %s", jpid, pid, st)
		}
		if out := e.ctr(t, "task", "exec", "--exec-id", "j1", "joined", "hostname"); strings.TrimSpace(out) == "" {
			t.Error("exec in the joined container printed nothing")
		}
		e.removeTask(t, "joined")
		// Deleting a container that joined must leave the sandbox running.
		if _, st := e.taskStatus(t, "long"); st != "RUNNING" {
			t.Fatalf("after the joined container went, task long is %q", st)
		}
		if out := e.ctr(t, "task", "exec", "--exec-id", "e3", "long", "echo", "still-here"); out != "still-here\n" {
			t.Errorf("exec after the joined container went printed %q", out)
		}
	})

	e.ctr(t, "task", "kill", "--signal", "SIGTERM", "long")
	e.waitStatus(t, "long", "STOPPED")
	_, stderr, err := e.d.Ctr(testContext(t, time.Minute), "task", "rm", "long")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "exit code 143") {
		t.Errorf("ctr task rm: %q, want the SIGTERM trap's exit code 143", stderr)
	}
	e.ctr(t, "container", "rm", "long")
	if n, _ := strconv.Atoi(pid); n > 0 {
		waitGone(t, n)
	}
}

// pidCount is the number of processes `ctr task ps` lists for id.
func (e *env) pidCount(t *testing.T, id string) int {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(e.ctr(t, "task", "ps", id)), "\n")
	return len(lines) - 1 // the header
}

// waitGone fails t unless process pid exits soon.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("process %d still exists", pid)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
