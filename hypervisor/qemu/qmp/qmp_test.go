package qmp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/joeyrt/joey/internal/testutil"
)

// qemuProc is a QEMU started by a test; err is set before exited closes.
type qemuProc struct {
	exited chan struct{}
	err    error
}

// startQEMU runs a QEMU that boots nothing (-S, no kernel) with extra args
// and returns a connected client. The QEMU is killed when the test ends.
func startQEMU(t *testing.T, extra ...string) (*Client, *qemuProc) {
	t.Helper()
	bin := testutil.RequireQEMU(t)
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "qmp.sock")
	args := append([]string{"-S", "-nodefaults", "-no-user-config", "-display", "none", "-accel", "tcg",
		"-chardev", "socket,id=qmp,path=" + sock + ",server=on,wait=off", "-mon", "chardev=qmp,mode=control"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	proc := &qemuProc{exited: make(chan struct{})}
	exited := proc.exited
	go func() { proc.err = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		c, err := Dial(ctx, sock)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c, proc
		}
		select {
		case <-exited:
			t.Fatalf("qemu exited before QMP answered: %v", err)
		case <-ctx.Done():
			t.Fatalf("QMP never answered: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDialNegotiatesAndQueryStatusAnswers(t *testing.T) {
	c, _ := startQEMU(t, "-machine", "none")
	if v := c.Greeting().QMP.Version.QEMU; v.Major < 7 {
		t.Fatalf("greeting version %+v", v)
	}
	st, err := c.QueryStatus(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "prelaunch" || st.Running {
		t.Fatalf("status %+v, want prelaunch and not running", st)
	}
}

func TestExecuteReturnsQEMUsErrorClass(t *testing.T) {
	c, _ := startQEMU(t, "-machine", "none")
	ctx := testCtx(t)
	tests := []struct {
		name      string
		run       func() error
		wantClass string
	}{
		{"unknown command", func() error { return c.Execute(ctx, "no-such-command", nil, nil) }, "CommandNotFound"},
		{"unknown device", func() error { return c.DeviceDel(ctx, "nothing") }, "DeviceNotFound"},
		{"bad argument", func() error { return c.Execute(ctx, "query-status", map[string]int{"x": 1}, nil) }, "GenericError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var qe *Error
			if err := tt.run(); !errors.As(err, &qe) || qe.Class != tt.wantClass {
				t.Fatalf("error %v, want a qmp.Error of class %s", err, tt.wantClass)
			}
		})
	}
}

func TestConcurrentCommandsEachGetTheirOwnAnswer(t *testing.T) {
	c, _ := startQEMU(t, "-machine", "microvm", "-m", "96M")
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				st, err := c.QueryStatus(ctx)
				if err == nil && st.Status != "prelaunch" {
					err = fmt.Errorf("query-status answered %+v", st)
				}
				errs <- err
				return
			}
			m, err := c.QueryMemorySizeSummary(ctx)
			if err == nil && m.BaseMemory != 96<<20 {
				err = fmt.Errorf("query-memory-size-summary answered %+v", m)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestQueryCPUsFastListsEveryVCPU(t *testing.T) {
	c, _ := startQEMU(t, "-machine", "microvm", "-smp", "2")
	cpus, err := c.QueryCPUsFast(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) != 2 || cpus[0].Index != 0 || cpus[1].Index != 1 || cpus[0].Target != "x86_64" || cpus[0].ThreadID == 0 {
		t.Fatalf("cpus %+v", cpus)
	}
}

func TestEventsReachEverySubscriberThatWantsThem(t *testing.T) {
	c, _ := startQEMU(t, "-machine", "none")
	ctx := testCtx(t)
	both := c.Subscribe("STOP", "RESUME")
	defer both.Close()
	stops := c.Subscribe("STOP")
	defer stops.Close()
	if err := c.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 2 {
		e, err := both.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Name)
	}
	if !slices.Equal(got, []string{"RESUME", "STOP"}) {
		t.Fatalf("events %q, want RESUME then STOP", got)
	}
	if e, err := stops.Next(ctx); err != nil || e.Name != "STOP" || e.Time.IsZero() {
		t.Fatalf("STOP subscriber got %+v, %v", e, err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if e, err := stops.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("STOP subscriber got an unwanted %+v (%v)", e, err)
	}
}

func TestDeviceAddPlugsIntoARootPortAndDeviceDelIsAccepted(t *testing.T) {
	c, _ := startQEMU(t, "-machine", "q35", "-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1")
	ctx := testCtx(t)
	if err := c.DeviceAdd(ctx, "virtio-rng-pci", "rng0", map[string]any{"bus": "rp0"}); err != nil {
		t.Fatal(err)
	}
	// Before the guest runs, bridges have no bus numbers and query-pci
	// cannot see behind them; the QOM tree can.
	var parent string
	if err := c.Execute(ctx, "qom-get", map[string]string{"path": "/machine/peripheral/rng0", "property": "parent_bus"}, &parent); err != nil {
		t.Fatal(err)
	}
	if parent != "/machine/peripheral/rp0/rp0" {
		t.Fatalf("rng0 sits on %q, want rp0's bus", parent)
	}
	if err := c.DeviceAdd(ctx, "virtio-rng-pci", "rng1", map[string]any{"bus": "nowhere"}); err == nil {
		t.Fatal("device_add on a missing bus succeeded")
	}
	if err := c.DeviceAdd(ctx, "virtio-rng-pci", "rng1", map[string]any{"id": "x"}); err == nil {
		t.Fatal("id passed as a property was accepted")
	}
	if err := c.DeviceDel(ctx, "rng0"); err != nil {
		t.Fatal(err)
	}
}

func TestGetFDHandsAFileToQEMU(t *testing.T) {
	c, _ := startQEMU(t, "-machine", "none")
	ctx := testCtx(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := c.GetFD(ctx, "fd0", r); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseFD(ctx, "fd0"); err != nil {
		t.Fatalf("closefd of a received file: %v", err)
	}
	if err := c.CloseFD(ctx, "fd0"); err == nil {
		t.Fatal("closefd of a file QEMU no longer has succeeded")
	}
}

func TestQuitEndsQEMUAndTheConnection(t *testing.T) {
	c, proc := startQEMU(t, "-machine", "none")
	ctx := testCtx(t)
	sub := c.Subscribe("SHUTDOWN")
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	e, err := sub.Next(ctx)
	if err != nil || e.Name != "SHUTDOWN" {
		t.Fatalf("got %+v, %v; want SHUTDOWN", e, err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("connection still open after quit")
	}
	if _, err := sub.Next(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("subscription after close: %v", err)
	}
	if _, err := c.QueryStatus(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("command after close: %v", err)
	}
	if late := c.Subscribe(); late != nil {
		if _, err := late.Next(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("subscription made after close: %v", err)
		}
	}
	select {
	case <-proc.exited:
	case <-ctx.Done():
		t.Fatal("qemu still running after quit")
	}
	if proc.err != nil {
		t.Fatalf("qemu did not exit cleanly: %v", proc.err)
	}
}

func TestExecuteWithEndedContextFails(t *testing.T) {
	c, _ := startQEMU(t, "-machine", "none")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.QueryStatus(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if _, err := c.QueryStatus(testCtx(t)); err != nil {
		t.Fatalf("client unusable after a cancelled command: %v", err)
	}
}

func TestDialFailsWithoutAListener(t *testing.T) {
	if _, err := Dial(testCtx(t), filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Fatal("Dial succeeded without a listener")
	}
}
