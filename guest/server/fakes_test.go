package server

import (
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/guest/container"
)

// fakeProc is a process of fakeContainers: its output is written by the
// test through the pipes' other ends.
type fakeProc struct {
	outW, errW *io.PipeWriter
	stdin      *io.PipeReader
	io         *container.IO
	exit       chan container.ExitStatus
}

type fakeContainers struct {
	mu      sync.Mutex
	specs   map[string]*specs.Spec
	procs   map[string]*fakeProc // "id/exec"
	calls   []string
	deleted map[string]bool
	stats   *cgroups.Stats
}

func newFakeContainers() *fakeContainers {
	return &fakeContainers{specs: map[string]*specs.Spec{}, procs: map[string]*fakeProc{}, deleted: map[string]bool{}}
}

func (f *fakeContainers) record(format string, args ...any) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *fakeContainers) newProc(id, execID string, terminal bool) {
	outR, outW := io.Pipe()
	inR, inW := io.Pipe()
	p := &fakeProc{outW: outW, stdin: inR, exit: make(chan container.ExitStatus, 1)}
	p.io = &container.IO{Stdin: inW, Stdout: outR}
	if !terminal {
		errR, errW := io.Pipe()
		p.errW = errW
		p.io.Stderr = errR
	}
	f.mu.Lock()
	f.procs[id+"/"+execID] = p
	f.mu.Unlock()
}

func (f *fakeContainers) proc(id, execID string) (*fakeProc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.procs[id+"/"+execID]
	if !ok {
		return nil, fmt.Errorf("%s/%s: %w", id, execID, container.ErrNotFound)
	}
	return p, nil
}

func (f *fakeContainers) Create(ctx context.Context, id string, spec *specs.Spec, terminal bool) error {
	f.mu.Lock()
	if _, ok := f.specs[id]; ok {
		f.mu.Unlock()
		return fmt.Errorf("%s: %w", id, container.ErrAlreadyExists)
	}
	f.specs[id] = spec
	f.mu.Unlock()
	f.newProc(id, "", terminal)
	f.record("create %s %v", id, terminal)
	return nil
}

func (f *fakeContainers) Start(ctx context.Context, id string) error {
	if _, err := f.proc(id, ""); err != nil {
		return err
	}
	f.record("start %s", id)
	return nil
}

func (f *fakeContainers) Exec(ctx context.Context, id, execID string, p *specs.Process, terminal bool) error {
	if _, err := f.proc(id, ""); err != nil {
		return err
	}
	f.newProc(id, execID, terminal)
	f.record("exec %s %s %v", id, execID, p.Args)
	return nil
}

func (f *fakeContainers) Signal(ctx context.Context, id, execID string, sig syscall.Signal, all bool) error {
	p, err := f.proc(id, execID)
	if err != nil {
		return err
	}
	f.record("signal %s/%s %d %v", id, execID, sig, all)
	if sig == syscall.SIGKILL {
		p.outW.Close()
		if p.errW != nil {
			p.errW.Close()
		}
		p.exit <- container.ExitStatus{Code: 137, ExitedAt: time.Unix(1700000000, 0)}
	}
	return nil
}

func (f *fakeContainers) Wait(ctx context.Context, id, execID string) (container.ExitStatus, error) {
	p, err := f.proc(id, execID)
	if err != nil {
		return container.ExitStatus{}, err
	}
	select {
	case st := <-p.exit:
		p.exit <- st
		return st, nil
	case <-ctx.Done():
		return container.ExitStatus{}, ctx.Err()
	}
}

func (f *fakeContainers) Stdio(id, execID string) (*container.IO, error) {
	p, err := f.proc(id, execID)
	if err != nil {
		return nil, err
	}
	return p.io, nil
}

func (f *fakeContainers) Resize(ctx context.Context, id, execID string, rows, cols uint16) error {
	f.record("resize %s/%s %dx%d", id, execID, rows, cols)
	return nil
}

func (f *fakeContainers) Pause(ctx context.Context, id string) error {
	f.record("pause %s", id)
	return nil
}

func (f *fakeContainers) Resume(ctx context.Context, id string) error {
	f.record("resume %s", id)
	return nil
}

func (f *fakeContainers) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	f.record("update %s pids=%d", id, *r.Pids.Limit)
	return nil
}

func (f *fakeContainers) Processes(ctx context.Context, id string) ([]int, error) {
	return []int{1, 7}, nil
}

func (f *fakeContainers) Stats(ctx context.Context, id string) (*cgroups.Stats, error) {
	return f.stats, nil
}

func (f *fakeContainers) Remove(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.specs[id]; !ok {
		return fmt.Errorf("%s: %w", id, container.ErrNotFound)
	}
	delete(f.specs, id)
	f.calls = append(f.calls, "remove "+id)
	return nil
}

func (f *fakeContainers) DeleteExec(ctx context.Context, id, execID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted[id+"/"+execID] = true
	return nil
}

func (f *fakeContainers) wasDeleted(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deleted[key]
}

type fakeNetwork struct {
	ifaces []*protocol.Interface
	routes []*protocol.Route
	neighs []*protocol.Neighbor
}

func (n *fakeNetwork) UpdateInterface(ctx context.Context, in *protocol.Interface) (*protocol.Interface, error) {
	n.ifaces = append(n.ifaces, in)
	return in, nil
}

func (n *fakeNetwork) ListInterfaces(ctx context.Context) (*protocol.Interfaces, error) {
	return &protocol.Interfaces{Interfaces: n.ifaces}, nil
}

func (n *fakeNetwork) UpdateRoutes(ctx context.Context, routes []*protocol.Route) (*protocol.Routes, error) {
	n.routes = routes
	return &protocol.Routes{Routes: routes}, nil
}

func (n *fakeNetwork) ListRoutes(ctx context.Context) (*protocol.Routes, error) {
	return &protocol.Routes{Routes: n.routes}, nil
}

func (n *fakeNetwork) AddNeighbors(ctx context.Context, ns []*protocol.Neighbor) error {
	n.neighs = append(n.neighs, ns...)
	return nil
}
