package container

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// startSleeper creates and starts a container whose init sleeps.
func startSleeper(t *testing.T, m *Manager) string {
	t.Helper()
	id := uniqueID(t)
	if err := m.Create(context.Background(), id, testSpec(t, "sleep", "1000"), false); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	return id
}

func execProcess(args ...string) *specs.Process {
	return &specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"}
}

func TestExecRunsInsideTheContainer(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := startSleeper(t, m)
	// PID 1 of the exec's PID namespace is the container's init, and the
	// exec sees the container's hostname.
	err := m.Exec(ctx, id, "e1", execProcess("sh", "-c", "hostname; cat /proc/1/cmdline; echo; echo oops >&2; exit 5"), false)
	if err != nil {
		t.Fatal(err)
	}
	pio, err := m.Stdio(id, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(t, pio.Stdout), "joeytest\nsleep\x001000\x00\n"; got != want {
		t.Errorf("exec stdout = %q, want %q", got, want)
	}
	if got := readAll(t, pio.Stderr); got != "oops\n" {
		t.Errorf("exec stderr = %q", got)
	}
	if st := waitExit(t, m, id, "e1"); st.Code != 5 {
		t.Fatalf("exec exit code = %d, want 5", st.Code)
	}
	if st, _ := m.Status(id); st != Running {
		t.Fatalf("container status after the exec = %q, want running", st)
	}
	mustErr(t, m.Exec(ctx, id, "e1", execProcess("true"), false), ErrAlreadyExists)
	// A failed exec frees its ID.
	if err := m.Exec(ctx, id, "again", execProcess("/no/such/binary"), false); err == nil {
		t.Fatal("exec of a missing binary succeeded")
	}
	if err := m.Exec(ctx, id, "again", execProcess("true"), false); err != nil {
		t.Fatalf("exec after a failed one with the same ID: %v", err)
	}
	if st := waitExit(t, m, id, "again"); st.Code != 0 {
		t.Fatalf("exit code = %d", st.Code)
	}
	mustErr(t, m.Signal(ctx, id, "e1", 9, false), ErrNotFound, "exited")
	_, err = m.Wait(ctx, id, "nosuch")
	mustErr(t, err, ErrNotFound, "nosuch")

	// An exited exec can be dropped; a running one cannot.
	if err := m.DeleteExec(ctx, id, "e1"); err != nil {
		t.Fatal(err)
	}
	_, err = m.Stdio(id, "e1")
	mustErr(t, err, ErrNotFound)
	if err := m.Exec(ctx, id, "e2", execProcess("sleep", "1000"), false); err != nil {
		t.Fatal(err)
	}
	mustErr(t, m.DeleteExec(ctx, id, "e2"), ErrInvalidState, "still running")

	if err := m.Signal(ctx, id, "", 9, false); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, m, id, ""); st.Code != 137 {
		t.Fatalf("init exit code = %d, want 137", st.Code)
	}
	// The exec shared the init's PID namespace, so it died with it.
	if st := waitExit(t, m, id, "e2"); st.Code != 137 {
		t.Fatalf("exec exit code after the init died = %d, want 137", st.Code)
	}
	mustErr(t, m.Exec(ctx, id, "e3", execProcess("true"), false), ErrInvalidState, "stopped")
}

func TestConcurrentExecsEachGetTheirOwnStdioAndStatus(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := startSleeper(t, m)
	const n = 4
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			execID := fmt.Sprintf("x%d", i)
			script := fmt.Sprintf("read x; echo %d-$x; exit %d", i, 10+i)
			if err := m.Exec(ctx, id, execID, execProcess("sh", "-c", script), false); err != nil {
				errs <- err
				return
			}
			pio, err := m.Stdio(id, execID)
			if err != nil {
				errs <- err
				return
			}
			pio.Stdin.Write([]byte("in\n"))
			out, err := readWithin(pio.Stdout, 10*time.Second)
			if want := fmt.Sprintf("%d-in\n", i); err != nil || out != want {
				errs <- fmt.Errorf("exec %s: stdout %q (%v), want %q", execID, out, err, want)
				return
			}
			st, err := m.Wait(ctx, id, execID)
			if err != nil || st.Code != 10+i {
				errs <- fmt.Errorf("exec %s: exit %+v (%v), want code %d", execID, st, err, 10+i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
