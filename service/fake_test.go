package service

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/runtime"
)

// The fake runtime below stands in for a VM sandbox. A process runs a
// program (a Go function given by the test) on a goroutine; the fake keeps
// the runtime contract the service relies on: Wait returns after the
// program's last write to its stdio, and Kill ends programs with 128+signal.

const fakePid = 4242

// program is what a fake process runs; it returns the exit code.
type program func(r *fakeRun) uint32

// fakeRun is a running program's view of its process.
type fakeRun struct {
	IO     runtime.IO
	Spec   *specs.Process
	Killed <-chan syscall.Signal
	// StdinClosed is closed by the runtime's CloseIO.
	StdinClosed <-chan struct{}
}

// untilKilled blocks until the process is signalled.
func untilKilled(r *fakeRun) uint32 { return 128 + uint32(<-r.Killed) }

// prints writes out and err and exits with code.
func prints(out, errOut string, code uint32) program {
	return func(r *fakeRun) uint32 {
		if r.IO.Stdout != nil {
			r.IO.Stdout.Write([]byte(out))
		}
		if r.IO.Stderr != nil && errOut != "" {
			r.IO.Stderr.Write([]byte(errOut))
		}
		return code
	}
}

type fakeHandler struct {
	// programs are looked up by container id, then "<id>/<exec id>".
	programs map[string]program
	// failCreateContainer makes CreateContainer fail.
	failCreateContainer error

	mu        sync.Mutex
	sandboxes []*fakeSandbox // guarded by mu
	cleaned   []string       // guarded by mu
}

func (h *fakeHandler) Name() string { return "fake" }

func (h *fakeHandler) CreateSandbox(_ context.Context, cfg runtime.SandboxConfig) (runtime.Sandbox, error) {
	sb := &fakeSandbox{h: h, cfg: cfg, containers: map[string]*fakeContainer{}}
	h.mu.Lock()
	h.sandboxes = append(h.sandboxes, sb)
	h.mu.Unlock()
	return sb, nil
}

func (h *fakeHandler) Cleanup(_ context.Context, ns, id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleaned = append(h.cleaned, ns+"/"+id)
	return nil
}

func (h *fakeHandler) sandbox(i int) *fakeSandbox {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i >= len(h.sandboxes) {
		return nil
	}
	return h.sandboxes[i]
}

func (h *fakeHandler) sandboxCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sandboxes)
}

type fakeSandbox struct {
	h   *fakeHandler
	cfg runtime.SandboxConfig

	mu         sync.Mutex
	containers map[string]*fakeContainer // guarded by mu
	shutdowns  int                       // guarded by mu
}

func (s *fakeSandbox) ID() string { return s.cfg.ID }
func (s *fakeSandbox) Pid() int   { return fakePid }

func (s *fakeSandbox) CreateContainer(_ context.Context, cfg runtime.ContainerConfig) (runtime.Container, error) {
	if s.h.failCreateContainer != nil {
		return nil, s.h.failCreateContainer
	}
	c := &fakeContainer{sb: s, cfg: cfg, procs: map[string]*fakeProc{}}
	c.procs[""] = newFakeProc(cfg.IO, cfg.Spec.Process, s.h.programs[cfg.ID], 1)
	s.mu.Lock()
	s.containers[cfg.ID] = c
	s.mu.Unlock()
	return c, nil
}

func (s *fakeSandbox) Container(id string) (runtime.Container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, errdefs.ErrNotFound
	}
	return c, nil
}

func (s *fakeSandbox) Containers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id := range s.containers {
		ids = append(ids, id)
	}
	return ids
}

func (s *fakeSandbox) Shutdown(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdowns++
	return nil
}

func (s *fakeSandbox) shutdownCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdowns
}

// vmDies ends every running process as a dying VM would and reports it.
func (s *fakeSandbox) vmDies() {
	s.mu.Lock()
	cs := make([]*fakeContainer, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.mu.Lock()
		for _, p := range c.procs {
			p.end(255)
		}
		c.mu.Unlock()
	}
	s.cfg.Events(runtime.Event{Kind: runtime.EventVMExited})
}

type fakeContainer struct {
	sb  *fakeSandbox
	cfg runtime.ContainerConfig

	mu       sync.Mutex
	procs    map[string]*fakeProc // guarded by mu
	nextPid  int                  // guarded by mu
	paused   bool                 // guarded by mu
	resized  []string             // guarded by mu; "exec WxH"
	closedIO []string             // guarded by mu
	updates  []*specs.LinuxResources
}

type fakeProc struct {
	io   runtime.IO
	spec *specs.Process
	prog program
	pid  int

	kill        chan syscall.Signal
	stdinClosed chan struct{}
	closeStdin  sync.Once

	mu      sync.Mutex
	status  runtime.ProcessStatus // guarded by mu
	exit    *runtime.ExitStatus   // guarded by mu
	exited  chan struct{}
	endOnce sync.Once
}

func newFakeProc(io runtime.IO, spec *specs.Process, prog program, pid int) *fakeProc {
	if prog == nil {
		prog = untilKilled
	}
	return &fakeProc{io: io, spec: spec, prog: prog, pid: pid, kill: make(chan syscall.Signal, 4), stdinClosed: make(chan struct{}),
		status: runtime.StatusCreated, exited: make(chan struct{})}
}

func (p *fakeProc) end(code uint32) {
	p.endOnce.Do(func() {
		p.mu.Lock()
		p.status = runtime.StatusStopped
		p.exit = &runtime.ExitStatus{Code: code, ExitedAt: time.Now()}
		p.mu.Unlock()
		close(p.exited)
	})
}

func (p *fakeProc) state() runtime.ProcessStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (c *fakeContainer) ID() string { return c.cfg.ID }

func (c *fakeContainer) proc(execID string) (*fakeProc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.procs[execID]
	if !ok {
		return nil, fmt.Errorf("fake process %q: %w", execID, errdefs.ErrNotFound)
	}
	return p, nil
}

func (c *fakeContainer) Start(_ context.Context, execID string) error {
	p, err := c.proc(execID)
	if err != nil {
		return err
	}
	p.mu.Lock()
	if p.status != runtime.StatusCreated {
		p.mu.Unlock()
		return fmt.Errorf("fake process %q is %s: %w", execID, p.status, errdefs.ErrFailedPrecondition)
	}
	p.status = runtime.StatusRunning
	p.mu.Unlock()
	go func() {
		p.end(p.prog(&fakeRun{IO: p.io, Spec: p.spec, Killed: p.kill, StdinClosed: p.stdinClosed}))
	}()
	return nil
}

func (c *fakeContainer) Exec(_ context.Context, execID string, spec *specs.Process, io runtime.IO) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.procs[execID]; ok {
		return errdefs.ErrAlreadyExists
	}
	c.nextPid++
	c.procs[execID] = newFakeProc(io, spec, c.sb.h.programs[c.cfg.ID+"/"+execID], 100+c.nextPid)
	return nil
}

func (c *fakeContainer) Kill(_ context.Context, execID string, sig syscall.Signal, all bool) error {
	if !all {
		p, err := c.proc(execID)
		if err != nil {
			return err
		}
		p.kill <- sig
		return nil
	}
	// The init first, the others a little later: the service must still
	// publish the init's exit last.
	initProc, err := c.proc("")
	if err != nil {
		return err
	}
	if initProc.state() == runtime.StatusRunning {
		initProc.kill <- sig
	}
	<-initProc.exited
	time.Sleep(50 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, p := range c.procs {
		if id != "" && p.state() == runtime.StatusRunning {
			p.kill <- sig
		}
	}
	return nil
}

func (c *fakeContainer) Wait(ctx context.Context, execID string) (runtime.ExitStatus, error) {
	p, err := c.proc(execID)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return runtime.ExitStatus{}, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return *p.exit, nil
}

func (c *fakeContainer) ResizePty(_ context.Context, execID string, w, h uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resized = append(c.resized, fmt.Sprintf("%q %dx%d", execID, w, h))
	return nil
}

func (c *fakeContainer) CloseIO(_ context.Context, execID string) error {
	p, err := c.proc(execID)
	if err != nil {
		return err
	}
	p.closeStdin.Do(func() { close(p.stdinClosed) })
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closedIO = append(c.closedIO, execID)
	return nil
}

func (c *fakeContainer) State(execID string) (runtime.ProcessState, error) {
	p, err := c.proc(execID)
	if err != nil {
		return runtime.ProcessState{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return runtime.ProcessState{ID: execID, Pid: p.pid, Status: p.status, Terminal: p.io.Terminal, Exit: p.exit}, nil
}

func (c *fakeContainer) Pause(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = true
	return nil
}

func (c *fakeContainer) Resume(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.paused {
		return fmt.Errorf("container is not paused: %w", errdefs.ErrFailedPrecondition)
	}
	c.paused = false
	return nil
}

func (c *fakeContainer) Update(_ context.Context, r *specs.LinuxResources) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updates = append(c.updates, r)
	return nil
}

func (c *fakeContainer) Stats(context.Context) (*cgroupsv2.Metrics, error) {
	return &cgroupsv2.Metrics{
		Pids:   &cgroupsv2.PidsStat{Current: 2, Limit: 100},
		Memory: &cgroupsv2.MemoryStat{Usage: 1 << 20},
	}, nil
}

func (c *fakeContainer) Pids(context.Context) ([]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pids []int
	for _, p := range c.procs {
		if p.state() == runtime.StatusRunning {
			pids = append(pids, p.pid)
		}
	}
	return pids, nil
}

func (c *fakeContainer) Delete(_ context.Context, execID string) (runtime.ExitStatus, error) {
	p, err := c.proc(execID)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	switch p.state() {
	case runtime.StatusRunning, runtime.StatusPaused:
		return runtime.ExitStatus{}, fmt.Errorf("fake process %q is running: %w", execID, errdefs.ErrFailedPrecondition)
	case runtime.StatusCreated:
		p.end(0)
	}
	c.mu.Lock()
	delete(c.procs, execID)
	c.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	return *p.exit, nil
}
