// Package reaper is the one wait loop of joey-agent.
//
// The agent is PID 1 of the VM, so every orphan of every container ends up as
// its child and must be reaped, or zombies pile up. But the agent also starts
// processes whose exit statuses it needs (container inits, execs, a debug
// shell), and libcontainer waits for its own intermediate children ("runc
// init" stages) while it starts a process. A second wait loop, or a
// wait4(-1) running at the wrong moment, would steal those statuses:
// libcontainer's start would fail with ECHILD and exec.Cmd.Wait would lose
// its exit code.
//
// So there is exactly one Reaper per process. It waits for SIGCHLD and reaps
// with wait4(-1, WNOHANG), handing each status to whoever registered that pid
// and dropping the rest (orphans). Starting a process goes through Start,
// which keeps the loop from reaping while the start function runs and
// registers the new pid before the loop can see it exit: code inside the
// start function may wait for its own children, and nothing outside may.
//
// Outside the VM (tests, or an agent that is not PID 1) New makes the process
// a child subreaper (PR_SET_CHILD_SUBREAPER), so descendants whose parent
// dies are re-parented to it rather than to the host's init, just as they
// would be to PID 1 in the guest.
package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Exit is how a process ended.
type Exit struct {
	Pid int
	// Code is the exit code of a process that exited, or 128+n for one
	// killed by signal n (the shell's convention: SIGKILL gives 137).
	Code int
	// At is when the reaper collected the status.
	At time.Time
}

// Reaper is the process-wide wait loop. Create it with New.
type Reaper struct {
	// startMu is held for reading while a start function runs and for
	// writing while the loop reaps: starts may overlap each other, never a
	// reaping pass.
	startMu sync.RWMutex

	mu      sync.Mutex
	waiters map[int]chan Exit // guarded by mu; pid → its one-shot channel
	closed  bool              // guarded by mu

	sigc       chan os.Signal
	stop       chan struct{}
	done       chan struct{}
	subreaper  bool // New made the process a subreaper; Close undoes it
	closeOnce  sync.Once
	closeError error
}

var (
	activeMu sync.Mutex
	active   *Reaper // guarded by activeMu; the one running reaper, if any
)

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("reaper is closed")

// New starts the process's wait loop. There can be only one per process: a
// second New before Close fails, because two loops would steal each other's
// statuses.
func New() (*Reaper, error) {
	activeMu.Lock()
	defer activeMu.Unlock()
	if active != nil {
		return nil, errors.New("new reaper: this process already has one; share it (one wait loop per process)")
	}
	r := &Reaper{
		waiters: map[int]chan Exit{},
		sigc:    make(chan os.Signal, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("new reaper: set child subreaper: %w", err)
		}
		r.subreaper = true
	}
	signal.Notify(r.sigc, unix.SIGCHLD)
	// Children that ended before the handler existed sent no SIGCHLD we saw;
	// a pass is due anyway (unless a real SIGCHLD already queued one).
	select {
	case r.sigc <- unix.SIGCHLD:
	default:
	}
	go r.loop()
	active = r
	return r, nil
}

// Start runs start with reaping held off and registers the pid it returns,
// so that start may wait for children of its own (libcontainer does) and the
// new process's exit cannot be reaped before it is registered. The returned
// channel yields the process's Exit once, then nothing. If start fails, no
// pid is registered and its error is returned as is.
//
// start must not call Start or Hold: it would deadlock against a waiting
// reaping pass.
func (r *Reaper) Start(start func() (pid int, err error)) (<-chan Exit, error) {
	r.startMu.RLock()
	defer r.startMu.RUnlock()
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	pid, err := start()
	if err != nil {
		return nil, err
	}
	if pid <= 0 {
		return nil, fmt.Errorf("reaper start: start function returned pid %d", pid)
	}
	ch := make(chan Exit, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.waiters[pid]; dup {
		return nil, fmt.Errorf("reaper start: pid %d is already registered", pid)
	}
	r.waiters[pid] = ch
	return ch, nil
}

// Hold runs fn with reaping held off, for code that waits for children it
// starts itself and needs no exit status from the reaper (libcontainer's
// hooks run during Destroy).
func (r *Reaper) Hold(fn func() error) error {
	r.startMu.RLock()
	defer r.startMu.RUnlock()
	return fn()
}

// StartCmd starts cmd and returns a channel that yields its exit code (see
// Exit.Code) once. The reaper, not cmd.Wait, collects the status, so cmd.Wait
// must never be called and exec.Cmd's copying goroutines would never be
// released: cmd's Stdin, Stdout and Stderr must each be nil or an *os.File,
// and cmd must not come from exec.CommandContext.
func (r *Reaper) StartCmd(cmd *exec.Cmd) (<-chan int, error) {
	if err := checkCmd(cmd); err != nil {
		return nil, err
	}
	exit, err := r.Start(func() (int, error) {
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	code := make(chan int, 1)
	go func() {
		e := <-exit
		// The status is ours already; Release only drops the pidfd.
		cmd.Process.Release()
		code <- e.Code
	}()
	return code, nil
}

func checkCmd(cmd *exec.Cmd) error {
	if cmd.Cancel != nil {
		return fmt.Errorf("start %s: exec.CommandContext is not supported: the reaper owns the wait, so the context watcher would never end", cmd.Path)
	}
	for _, s := range []struct {
		name string
		v    any
	}{{"Stdin", cmd.Stdin}, {"Stdout", cmd.Stdout}, {"Stderr", cmd.Stderr}} {
		if s.v == nil {
			continue
		}
		if _, ok := s.v.(*os.File); !ok {
			return fmt.Errorf("start %s: cmd.%s is a %T: use an *os.File (e.g. an os.Pipe end) or nil, since cmd.Wait, which would end exec's copying goroutine, is never called", cmd.Path, s.name, s.v)
		}
	}
	return nil
}

// Close stops the loop; processes still registered never get their Exit.
// New may be called again afterwards.
func (r *Reaper) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		signal.Stop(r.sigc)
		close(r.stop)
		<-r.done
		if r.subreaper {
			if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0); err != nil {
				r.closeError = fmt.Errorf("close reaper: clear child subreaper: %w", err)
			}
		}
		activeMu.Lock()
		if active == r {
			active = nil
		}
		activeMu.Unlock()
	})
	return r.closeError
}

func (r *Reaper) loop() {
	defer close(r.done)
	for {
		select {
		case <-r.stop:
			return
		case <-r.sigc:
		}
		r.reapAll()
	}
}

// reapAll collects every child that has ended. SIGCHLDs coalesce, so one
// signal may stand for many exits: loop until wait4 finds none.
func (r *Reaper) reapAll() {
	r.startMu.Lock()
	defer r.startMu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			// ECHILD: no children at all; 0: none has ended yet.
			return
		}
		if !ws.Exited() && !ws.Signaled() {
			continue
		}
		r.dispatch(Exit{Pid: pid, Code: ExitCode(ws), At: time.Now()})
	}
}

func (r *Reaper) dispatch(e Exit) {
	r.mu.Lock()
	ch, ok := r.waiters[e.Pid]
	delete(r.waiters, e.Pid)
	r.mu.Unlock()
	if ok {
		ch <- e // buffered, and each channel gets exactly one Exit
	}
}

// ExitCode turns a wait status into the shell's exit code: the code of a
// process that exited, 128+signal for one killed by a signal, -1 otherwise.
func ExitCode(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return -1
}
