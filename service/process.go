package service

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/joeyrt/joey/runtime"
	"github.com/joeyrt/joey/service/stdio"
)

// unknownExit is the status reported for a process whose real exit status
// was lost (the runtime could not say how it ended), as containerd does for
// a task whose shim died.
const unknownExit = 255

// execsExitTimeout bounds how long the init's exit event waits for the
// container's exec processes to report theirs. The guest kills them with
// the init (they share its pid namespace); the bound only keeps a runtime
// that never reports an exec from holding the init's exit back for ever.
const execsExitTimeout = 10 * time.Second

// container is one container of the sandbox and its processes.
type container struct {
	id     string
	bundle string
	rc     runtime.Container

	// execs counts exec processes that are starting or running and whose
	// exit is not yet published; the init's exit is published after them,
	// as containerd expects the init's exit to be a container's last.
	execs sync.WaitGroup

	mu         sync.Mutex
	procs      map[string]*process // guarded by mu; "" is the init
	reserved   map[string]bool     // guarded by mu; exec IDs being created
	initExited bool                // guarded by mu; no exec may start once set
}

func newContainer(id, bundle string, rc runtime.Container, init *process) *container {
	return &container{
		id:       id,
		bundle:   bundle,
		rc:       rc,
		procs:    map[string]*process{"": init},
		reserved: map[string]bool{},
	}
}

func (c *container) process(execID string) (*process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.procs[execID]
	if !ok {
		return nil, fmt.Errorf("process %s of container %s: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// name is how errors and logs refer to a process.
func (c *container) name(execID string) string {
	if execID == "" {
		return "container " + c.id
	}
	return fmt.Sprintf("exec %s in container %s", execID, c.id)
}

// process is the service's record of one process: its stdio and how it
// ended. The runtime keeps everything else.
type process struct {
	execID string
	stdio  stdio.Config
	pipes  *stdio.Pipes

	mu      sync.Mutex
	started bool                // guarded by mu
	deleted bool                // guarded by mu
	exit    *runtime.ExitStatus // guarded by mu; set before done is closed
	// done is closed once the process's exit has been published, or when
	// it was deleted without having run.
	done     chan struct{}
	doneOnce sync.Once
}

func newProcess(execID string, cfg stdio.Config, pipes *stdio.Pipes) *process {
	return &process{execID: execID, stdio: cfg, pipes: pipes, done: make(chan struct{})}
}

// finish records how the process ended (st may be nil: deleted unstarted)
// and wakes its waiters. Only the first call counts.
func (p *process) finish(st *runtime.ExitStatus) {
	p.doneOnce.Do(func() {
		p.mu.Lock()
		if p.exit == nil {
			p.exit = st
		}
		p.mu.Unlock()
		close(p.done)
	})
}

func (p *process) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) exitStatus() *runtime.ExitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

// waitExit runs for every started process: it waits for the runtime to say
// the process ended (which is after its output was copied out), closes the
// host ends of its stdio so containerd's readers see EOF, and publishes the
// exit, in that order, before Wait and Delete may answer.
func (s *Service) waitExit(ctx context.Context, cancel context.CancelFunc, c *container, p *process) {
	defer cancel()
	if p.execID != "" {
		// After the exit is published (defers run last in, first out).
		defer c.execs.Done()
	}
	logger := log.G(ctx).WithField("container", c.id).WithField("exec", p.execID)
	st, err := c.rc.Wait(ctx, p.execID)
	if err != nil {
		if ctx.Err() != nil {
			// The shim is going away; containerd reports the task's end
			// from the delete command.
			return
		}
		logger.WithError(err).Error("wait for process: exit status lost")
		st = runtime.ExitStatus{Code: unknownExit, ExitedAt: time.Now()}
	}
	if st.ExitedAt.IsZero() {
		st.ExitedAt = time.Now()
	}
	if err := p.pipes.Close(); err != nil {
		logger.WithError(err).Warn("close stdio")
	}
	if p.execID == "" {
		c.mu.Lock()
		c.initExited = true
		c.mu.Unlock()
		if !waitTimeout(&c.execs, execsExitTimeout) {
			logger.Warnf("exec processes did not report their exit within %v of the init's; publishing the init's exit", execsExitTimeout)
		}
	}
	p.finishPublished(s, c, &st)
}

// finishPublished publishes the exit event, waits until it went out, and
// then records the exit, so that Wait and Delete answer after containerd
// has the event.
func (p *process) finishPublished(s *Service, c *container, st *runtime.ExitStatus) {
	p.mu.Lock()
	p.exit = st
	p.mu.Unlock()
	<-s.events.push(exitEvent(c.id, p.execID, s.taskPid(), st.Code, st.ExitedAt))
	p.finish(st)
}

// waitTimeout waits for wg, or d; it reports whether wg was done.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// vmExited publishes an exit for every init that was created but never
// started when the VM died: nothing else will report them, and containerd
// waits for an exit of every task. Started processes report through their
// waitExit, since the runtime marks them exited.
func (s *Service) vmExited(ctx context.Context) {
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		p, err := c.process("")
		if err != nil {
			continue
		}
		p.mu.Lock()
		// Holding mu keeps Start and Delete out until the exit is known.
		if p.started || p.deleted || p.exit != nil {
			p.mu.Unlock()
			continue
		}
		st := runtime.ExitStatus{Code: unknownExit, ExitedAt: time.Now()}
		if ps, err := c.rc.State(""); err == nil && ps.Exit != nil {
			st = *ps.Exit
		}
		p.exit = &st
		p.mu.Unlock()
		if err := p.pipes.Close(); err != nil {
			log.G(ctx).WithError(err).WithField("container", c.id).Warn("close stdio")
		}
		p.finishPublished(s, c, &st)
	}
}
