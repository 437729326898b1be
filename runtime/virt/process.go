package virt

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/agent"
	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/persist/api"
	"github.com/joeyrt/joey/runtime"
)

// drainTimeout bounds how long Wait waits, after a process has exited, for
// its output to be copied out. Output the process wrote is already buffered
// in the agent and comes out quickly; a stream still open that long after
// the exit is held by a process the exit did not end (a daemonized child of
// an exec), and Wait must not hang on it.
const drainTimeout = 5 * time.Second

// waitErrorGrace is how long a failed WaitProcess waits for the VM's end
// before it decides the process is lost.
const waitErrorGrace = 2 * time.Second

// process is the host's view of a guest process: the container's init or
// an exec.
type process struct {
	c        *container
	execID   string
	spec     *specs.Process
	io       runtime.IO
	terminal bool

	// exitedCh is closed when exit is set; done once the output has been
	// copied out too (or given up on).
	exitedCh chan struct{}
	done     chan struct{}
	output   sync.WaitGroup

	mu     sync.Mutex
	status runtime.ProcessStatus // guarded by mu
	exit   *runtime.ExitStatus   // guarded by mu; set once
	cancel context.CancelFunc    // guarded by mu; ends the copies and the wait
}

func newProcess(c *container, execID string, spec *specs.Process, io runtime.IO) *process {
	return &process{
		c:        c,
		execID:   execID,
		spec:     spec,
		io:       io,
		terminal: spec.Terminal,
		exitedCh: make(chan struct{}),
		done:     make(chan struct{}),
		status:   runtime.StatusCreated,
	}
}

func (p *process) name() string {
	if p.execID == "" {
		return p.c.id
	}
	return p.c.id + "/" + p.execID
}

func (p *process) agent() *agent.Client { return p.c.sb.agent }

// attach starts copying the process's stdio once the agent knows the
// process. Output is read even when nobody wants it: the agent buffers a
// bounded amount, and then the process would block on its pipe.
func (p *process) attach(ctx context.Context) {
	ctx, cancel := p.c.sb.detach(ctx)
	p.mu.Lock()
	p.cancel = cancel
	p.mu.Unlock()
	p.copyOutput(ctx, agent.Stdout, p.io.Stdout)
	if !p.terminal {
		p.copyOutput(ctx, agent.Stderr, p.io.Stderr)
	}
	switch {
	case p.io.Stdin != nil:
		go func() {
			// Closes the guest's stdin at the reader's EOF only: `ctr run`
			// never ends a pipe's stdin, and that must stay open.
			if err := p.agent().CopyInput(ctx, p.c.id, p.execID, p.io.Stdin); err != nil && ctx.Err() == nil {
				log.G(ctx).WithError(err).Debug("stdin copy ended")
			}
		}()
	case !p.terminal:
		// No stdin: the process reads EOF, as under runc with no stdin.
		if _, err := p.agent().CloseStdin(ctx, &protocol.CloseStdinRequest{ContainerId: p.c.id, ExecId: p.execID}); err != nil {
			log.G(ctx).WithError(agentErr(err)).Warnf("close stdin of %s", p.name())
		}
	}
}

func (p *process) copyOutput(ctx context.Context, s agent.Stream, w io.Writer) {
	if w == nil {
		w = io.Discard
	}
	p.output.Add(1)
	go func() {
		defer p.output.Done()
		if err := p.agent().CopyOutput(ctx, p.c.id, p.execID, s, w); err != nil && ctx.Err() == nil {
			log.G(ctx).WithError(err).Debugf("%s copy of %s ended", s, p.name())
		}
	}()
}

// startWait asks the agent for the process's exit, once, for every Wait.
func (p *process) startWait(ctx context.Context) {
	ctx, cancel := p.c.sb.detach(ctx)
	go func() {
		defer cancel()
		resp, err := p.agent().WaitProcess(ctx, &protocol.WaitProcessRequest{ContainerId: p.c.id, ExecId: p.execID})
		if err == nil {
			p.setExit(ctx, runtime.ExitStatus{Code: uint32(resp.Status), ExitedAt: time.Unix(0, resp.ExitedAtUnixNano)}, true)
			return
		}
		if ctx.Err() != nil {
			return // the sandbox is shutting down, which marks the exit
		}
		// Most likely the VM died and the connection with it; let the VM
		// watcher say so first. Otherwise the exit is lost for good.
		select {
		case <-p.c.sb.vm.Wait():
		case <-time.After(waitErrorGrace):
			log.G(ctx).WithError(agentErr(err)).Errorf("wait for %s failed; reporting status %d", p.name(), vmExitedStatus)
		}
		p.setExit(ctx, runtime.ExitStatus{Code: vmExitedStatus, ExitedAt: time.Now()}, false)
	}()
}

// setExit records how the process ended; the first call wins. With drain,
// Wait returns only once the output has been copied out (bounded by
// drainTimeout).
func (p *process) setExit(ctx context.Context, st runtime.ExitStatus, drain bool) {
	p.mu.Lock()
	if p.exit != nil {
		p.mu.Unlock()
		return
	}
	p.exit = &st
	p.status = runtime.StatusStopped
	close(p.exitedCh)
	p.mu.Unlock()
	go func() {
		if drain {
			p.drain(ctx)
		}
		close(p.done)
	}()
	if p.execID == "" {
		code := st.Code
		err := p.c.sb.state.updateContainer(ctx, p.c.id, func(cs *api.ContainerState) {
			cs.Status = api.ContainerStopped
			cs.ExitStatus = &code
			cs.ExitedAt = st.ExitedAt.UTC()
		})
		if err != nil {
			log.G(ctx).WithError(err).Warnf("record the exit of %s", p.name())
		}
	}
}

func (p *process) drain(ctx context.Context) {
	copied := make(chan struct{})
	go func() {
		p.output.Wait()
		close(copied)
	}()
	select {
	case <-copied:
	case <-p.c.sb.closing:
	case <-time.After(drainTimeout):
		log.G(ctx).Warnf("output of %s still open %v after it exited (a child process holds it?); not waiting for it", p.name(), drainTimeout)
	}
}

func (p *process) exited() bool {
	select {
	case <-p.exitedCh:
		return true
	default:
		return false
	}
}

// release stops the copies of a process that is being forgotten.
func (p *process) release() {
	p.mu.Lock()
	cancel := p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (p *process) start(ctx context.Context) error {
	p.mu.Lock()
	status := p.status
	p.mu.Unlock()
	if status != runtime.StatusCreated {
		return fmt.Errorf("start %s: %w: it is %s", p.name(), errdefs.ErrFailedPrecondition, status)
	}
	if p.execID == "" {
		if _, err := p.agent().StartContainer(ctx, &protocol.StartContainerRequest{ContainerId: p.c.id}); err != nil {
			return fmt.Errorf("start %s: %w", p.name(), agentErr(err))
		}
	} else {
		if p.c.init.exited() {
			return fmt.Errorf("start %s: %w: the container's init has exited", p.name(), errdefs.ErrFailedPrecondition)
		}
		data, err := json.Marshal(guestProcess(p.spec))
		if err != nil {
			return fmt.Errorf("start %s: %w", p.name(), err)
		}
		if _, err := p.agent().ExecProcess(ctx, &protocol.ExecProcessRequest{ContainerId: p.c.id, ExecId: p.execID, Process: data}); err != nil {
			return fmt.Errorf("start %s: %w", p.name(), agentErr(err))
		}
		p.attach(ctx)
		p.startWait(ctx)
	}
	p.mu.Lock()
	if p.exit == nil {
		p.status = runtime.StatusRunning
	}
	p.mu.Unlock()
	return nil
}

func (p *process) kill(ctx context.Context, sig syscall.Signal, all bool) error {
	p.mu.Lock()
	status := p.status
	p.mu.Unlock()
	switch {
	case status == runtime.StatusStopped && !all:
		return fmt.Errorf("kill %s: process already finished: %w", p.name(), errdefs.ErrNotFound)
	case status == runtime.StatusCreated && p.execID != "":
		return fmt.Errorf("kill %s: %w: the exec has not been started", p.name(), errdefs.ErrFailedPrecondition)
	}
	_, err := p.agent().SignalProcess(ctx, &protocol.SignalProcessRequest{
		ContainerId: p.c.id, ExecId: p.execID, Signal: uint32(sig), All: all,
	})
	if err != nil {
		return fmt.Errorf("kill %s with %v: %w", p.name(), sig, agentErr(err))
	}
	return nil
}

func (p *process) wait(ctx context.Context) (runtime.ExitStatus, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return runtime.ExitStatus{}, fmt.Errorf("wait for %s: %w", p.name(), ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return *p.exit, nil
}

func (p *process) resize(ctx context.Context, width, height uint32) error {
	if !p.terminal {
		return fmt.Errorf("resize %s: %w: the process has no terminal", p.name(), errdefs.ErrFailedPrecondition)
	}
	_, err := p.agent().TtyWinResize(ctx, &protocol.TtyWinResizeRequest{
		ContainerId: p.c.id, ExecId: p.execID, Rows: height, Cols: width,
	})
	if err != nil {
		return fmt.Errorf("resize %s: %w", p.name(), agentErr(err))
	}
	return nil
}

func (p *process) closeStdin(ctx context.Context) error {
	if p.exited() {
		return nil
	}
	_, err := p.agent().CloseStdin(ctx, &protocol.CloseStdinRequest{ContainerId: p.c.id, ExecId: p.execID})
	if err != nil {
		return fmt.Errorf("close stdin of %s: %w", p.name(), agentErr(err))
	}
	return nil
}

func (p *process) state() runtime.ProcessState {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := runtime.ProcessState{ID: p.execID, Pid: p.c.sb.Pid(), Status: p.status, Terminal: p.terminal}
	if p.exit != nil {
		e := *p.exit
		st.Exit = &e
	}
	return st
}

// exitStatus is the exit, or the zero status for a process that never ran.
func (p *process) exitStatus() runtime.ExitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exit == nil {
		return runtime.ExitStatus{}
	}
	return *p.exit
}
