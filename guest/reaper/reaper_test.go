package reaper

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testReaper is the one reaper of the test binary; tests share it as the
// agent's packages share the agent's.
var testReaper *Reaper

func TestMain(m *testing.M) {
	r, err := New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testReaper = r
	code := m.Run()
	testReaper.Close()
	os.Exit(code)
}

func waitCode(t *testing.T, ch <-chan int) int {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no exit status within 10s")
		return 0
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		kill   bool
		want   int
	}{
		{"normal exit gives its code", "exit 3", false, 3},
		{"success gives zero", "true", false, 0},
		{"SIGKILL gives 137", "exec sleep 100", true, 137},
		{"signal to itself gives 128+signal", "kill -TERM $$", false, 143},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("/bin/sh", "-c", tc.script)
			ch, err := testReaper.StartCmd(cmd)
			if err != nil {
				t.Fatal(err)
			}
			if tc.kill {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
			}
			if got := waitCode(t, ch); got != tc.want {
				t.Fatalf("exit code = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestExitCarriesPidAndTime(t *testing.T) {
	before := time.Now()
	cmd := exec.Command("/bin/true")
	ch, err := testReaper.Start(func() (int, error) {
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-ch:
		if e.Pid != cmd.Process.Pid || e.Code != 0 || e.At.Before(before) {
			t.Fatalf("exit = %+v, want pid %d, code 0, time after %v", e, cmd.Process.Pid, before)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10s")
	}
}

func TestOrphanOfDeadParentIsReaped(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The shell exits at once; its background sleep is re-parented to this
	// process (PID 1 in the guest, the subreaper here) and must not stay a
	// zombie after it ends.
	cmd := exec.Command("/bin/sh", "-c", "sleep 0.3 >/dev/null & echo $!")
	cmd.Stdout = w
	ch, err := testReaper.StartCmd(cmd)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	if c := waitCode(t, ch); c != 0 {
		t.Fatalf("shell exit code = %d", c)
	}
	if ppid := parentOf(orphan); ppid != os.Getpid() {
		t.Fatalf("orphan %d has parent %d, want this process %d", orphan, ppid, os.Getpid())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", orphan)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d still exists (state %q) 10s later: not reaped", orphan, stateOf(orphan))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func stateOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && len(b) > i+2 {
		return string(b[i+2])
	}
	return ""
}

func TestConcurrentStartsEachGetTheirOwnStatus(t *testing.T) {
	const n = 30
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := testReaper.StartCmd(exec.Command("/bin/sh", "-c", fmt.Sprintf("exit %d", i)))
			if err != nil {
				errs <- err
				return
			}
			select {
			case c := <-ch:
				if c != i {
					errs <- fmt.Errorf("process %d got exit code %d", i, c)
				}
			case <-time.After(20 * time.Second):
				errs <- fmt.Errorf("process %d: no exit status", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// libcontainer waits for its intermediate children itself while it starts a
// container process. Inside Start that wait must see its child's status even
// while other children keep the reaper busy.
func TestWaitInsideStartIsNotStolen(t *testing.T) {
	stopNoise := make(chan struct{})
	var noise sync.WaitGroup
	noise.Add(1)
	go func() {
		defer noise.Done()
		for {
			select {
			case <-stopNoise:
				return
			default:
			}
			ch, err := testReaper.StartCmd(exec.Command("/bin/true"))
			if err != nil {
				t.Error(err)
				return
			}
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Error("background process: no exit status")
				return
			}
		}
	}()
	defer func() { close(stopNoise); noise.Wait() }()

	for i := range 20 {
		final := exec.Command("/bin/sh", "-c", "exit 4")
		ch, err := testReaper.Start(func() (int, error) {
			helper := exec.Command("/bin/sh", "-c", "exit 5")
			err := helper.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 5 {
				return 0, fmt.Errorf("round %d: helper's own wait = %v, want exit status 5", i, err)
			}
			if err := final.Start(); err != nil {
				return 0, err
			}
			return final.Process.Pid, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-ch:
			if e.Code != 4 {
				t.Fatalf("round %d: final exit code = %d, want 4", i, e.Code)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: no exit", i)
		}
	}
}

func TestStartReturnsTheStartError(t *testing.T) {
	boom := errors.New("boom")
	if _, err := testReaper.Start(func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("Start error = %v, want %v", err, boom)
	}
	if _, err := testReaper.Start(func() (int, error) { return 0, nil }); err == nil {
		t.Fatal("Start accepted pid 0")
	}
	if _, err := testReaper.StartCmd(exec.Command("/nonexistent/binary")); err == nil {
		t.Fatal("StartCmd of a missing binary succeeded")
	}
}

func TestStartCmdRejectsStdioThatNeedsWait(t *testing.T) {
	cmd := exec.Command("/bin/echo", "hi")
	cmd.Stdout = &strings.Builder{}
	_, err := testReaper.StartCmd(cmd)
	if err == nil || !strings.Contains(err.Error(), "cmd.Stdout") {
		t.Fatalf("StartCmd with a strings.Builder stdout: err = %v, want one naming cmd.Stdout", err)
	}
	if cmd.Process != nil {
		t.Fatal("the rejected command was started")
	}
}

func TestSecondReaperIsRefused(t *testing.T) {
	if r, err := New(); err == nil {
		r.Close()
		t.Fatal("a second New succeeded while one reaper runs")
	}
}

func TestNewAfterCloseWorks(t *testing.T) {
	if err := testReaper.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := testReaper.Start(func() (int, error) { return 1, nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: err = %v, want ErrClosed", err)
	}
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	testReaper = r
	ch, err := r.StartCmd(exec.Command("/bin/sh", "-c", "exit 9"))
	if err != nil {
		t.Fatal(err)
	}
	if c := waitCode(t, ch); c != 9 {
		t.Fatalf("exit code = %d, want 9", c)
	}
}

func TestExitCodeConvention(t *testing.T) {
	for _, tc := range []struct {
		name string
		ws   unix.WaitStatus
		want int
	}{
		{"exited 0", 0, 0},
		{"exited 3", 3 << 8, 3},
		{"exited 255", 255 << 8, 255},
		{"killed by SIGKILL", unix.WaitStatus(unix.SIGKILL), 137},
		{"killed by SIGTERM with core flag clear", unix.WaitStatus(unix.SIGTERM), 143},
		{"killed by SIGSEGV with core dump", unix.WaitStatus(unix.SIGSEGV) | 0x80, 139},
		{"stopped is not an exit", 0x7f | unix.WaitStatus(unix.SIGSTOP)<<8, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExitCode(tc.ws); got != tc.want {
				t.Fatalf("ExitCode(%#x) = %d, want %d", uint32(tc.ws), got, tc.want)
			}
		})
	}
}
