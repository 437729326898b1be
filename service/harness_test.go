package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/events"
	ctrdruntime "github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/fifo"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/config"
)

const testNamespace = "testns"

// recorder is the event publisher: it keeps every event in order and lets
// a test look at the world at the moment an exit is published.
type recorder struct {
	t *testing.T

	mu     sync.Mutex
	events []events.Event // guarded by mu
	onExit func(*eventstypes.TaskExit)
	closed bool // guarded by mu
}

func (r *recorder) Publish(ctx context.Context, topic string, ev events.Event) error {
	if ns, _ := namespaces.Namespace(ctx); ns != testNamespace {
		r.t.Errorf("event %s published in namespace %q, want %q", topic, ns, testNamespace)
	}
	if want := ctrdruntime.GetTopic(ev); topic != want {
		r.t.Errorf("event %T published on topic %s, want %s", ev, topic, want)
	}
	r.mu.Lock()
	hook := r.onExit
	r.mu.Unlock()
	if e, ok := ev.(*eventstypes.TaskExit); ok && hook != nil {
		hook(e)
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	return nil
}

func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func (r *recorder) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// list describes the events so far, one short line each.
func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.events))
	for _, ev := range r.events {
		out = append(out, describe(ev))
	}
	return out
}

func describe(ev events.Event) string {
	switch e := ev.(type) {
	case *eventstypes.TaskCreate:
		return fmt.Sprintf("create %s pid=%d", e.ContainerID, e.Pid)
	case *eventstypes.TaskStart:
		return fmt.Sprintf("start %s pid=%d", e.ContainerID, e.Pid)
	case *eventstypes.TaskExit:
		return fmt.Sprintf("exit %s/%s pid=%d status=%d", e.ContainerID, e.ID, e.Pid, e.ExitStatus)
	case *eventstypes.TaskDelete:
		return fmt.Sprintf("delete %s pid=%d status=%d", e.ContainerID, e.Pid, e.ExitStatus)
	case *eventstypes.TaskExecAdded:
		return fmt.Sprintf("exec-added %s/%s", e.ContainerID, e.ExecID)
	case *eventstypes.TaskExecStarted:
		return fmt.Sprintf("exec-started %s/%s pid=%d", e.ContainerID, e.ExecID, e.Pid)
	case *eventstypes.TaskPaused:
		return "paused " + e.ContainerID
	case *eventstypes.TaskResumed:
		return "resumed " + e.ContainerID
	case *eventstypes.TaskOOM:
		return "oom " + e.ContainerID
	default:
		return fmt.Sprintf("%T", ev)
	}
}

// waitEvents waits until the events so far satisfy ok.
func (r *recorder) waitEvents(t *testing.T, what string, ok func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := r.list()
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; events:\n%s", what, strings.Join(got, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// harness runs a Service over a real ttRPC connection, as containerd talks
// to a shim.
type harness struct {
	t       *testing.T
	h       *fakeHandler
	rec     *recorder
	sd      shutdown.Service
	svc     *Service
	api     taskAPI.TTRPCTaskService
	dir     string
	cfgMu   sync.Mutex
	cfgSeen []string // config paths LoadConfig was called with
}

func newHarness(t *testing.T, h *fakeHandler) *harness {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), testNamespace)
	ctx, sd := shutdown.WithShutdown(ctx)
	hs := &harness{t: t, h: h, rec: &recorder{t: t}, sd: sd}
	// Socket paths are limited to 108 bytes, more than some TempDirs.
	dir, err := os.MkdirTemp("", "joey-svc-")
	if err != nil {
		t.Fatal(err)
	}
	hs.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })

	svc, err := New(ctx, Options{
		Handler:   h,
		Publisher: hs.rec,
		Shutdown:  sd,
		Namespace: testNamespace,
		LoadConfig: func(path string) (*config.Config, error) {
			hs.cfgMu.Lock()
			hs.cfgSeen = append(hs.cfgSeen, path)
			hs.cfgMu.Unlock()
			return config.Default(), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs.svc = svc
	server, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.API().RegisterTTRPC(server); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve(ctx, l)
	conn, err := net.Dial("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	hs.api = taskAPI.NewTTRPCTaskClient(client)
	t.Cleanup(func() {
		client.Close()
		server.Close()
		sd.Shutdown()
		select {
		case <-sd.Done():
		case <-time.After(10 * time.Second):
			t.Error("the shim's shutdown did not finish")
		}
	})
	return hs
}

func (hs *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	hs.t.Cleanup(cancel)
	return ctx
}

// bundle writes an OCI bundle for container id and returns its directory.
func (hs *harness) bundle(id string, annotations map[string]string) string {
	hs.t.Helper()
	dir := filepath.Join(hs.dir, "bundles", id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		hs.t.Fatal(err)
	}
	spec := specs.Spec{
		Version:     specs.Version,
		Process:     &specs.Process{Args: []string{"sh"}, Cwd: "/"},
		Root:        &specs.Root{Path: "rootfs"},
		Annotations: annotations,
	}
	data, err := json.Marshal(spec)
	if err != nil {
		hs.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		hs.t.Fatal(err)
	}
	return dir
}

// clientIO is containerd's client side of a process's fifos.
type clientIO struct {
	stdin, stdout, stderr string
	in                    io.WriteCloser
	out, err              *os.File
}

// newClientIO makes the fifos and opens their far ends as ctr does: the
// readers at once, non-blocking, so the shim's writer open succeeds.
func (hs *harness) newClientIO(name string) *clientIO {
	hs.t.Helper()
	dir := filepath.Join(hs.dir, "fifos", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		hs.t.Fatal(err)
	}
	c := &clientIO{
		stdin:  filepath.Join(dir, "in"),
		stdout: filepath.Join(dir, "out"),
		stderr: filepath.Join(dir, "err"),
	}
	for _, p := range []string{c.stdin, c.stdout, c.stderr} {
		if err := unix.Mkfifo(p, 0o600); err != nil {
			hs.t.Fatal(err)
		}
	}
	var err error
	if c.out, err = os.OpenFile(c.stdout, os.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
		hs.t.Fatal(err)
	}
	if c.err, err = os.OpenFile(c.stderr, os.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
		hs.t.Fatal(err)
	}
	if c.in, err = fifo.OpenFifo(context.Background(), c.stdin, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err != nil {
		hs.t.Fatal(err)
	}
	hs.t.Cleanup(func() { c.out.Close(); c.err.Close(); c.in.Close() })
	return c
}

// readAll reads f to EOF, failing if EOF does not come soon: EOF means
// every writer (the shim) has closed its end.
func readAll(f *os.File) (string, error) {
	if err := f.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	data, err := io.ReadAll(f)
	return string(data), err
}

func (hs *harness) create(id, bundle string, cio *clientIO, terminal bool) *taskAPI.CreateTaskResponse {
	hs.t.Helper()
	req := &taskAPI.CreateTaskRequest{ID: id, Bundle: bundle, Terminal: terminal}
	if cio != nil {
		req.Stdin, req.Stdout, req.Stderr = cio.stdin, cio.stdout, cio.stderr
		if terminal {
			req.Stderr = ""
		}
	}
	resp, err := hs.api.Create(hs.ctx(), req)
	if err != nil {
		hs.t.Fatalf("create %s: %v", id, err)
	}
	return resp
}

func (hs *harness) start(id, execID string) {
	hs.t.Helper()
	if _, err := hs.api.Start(hs.ctx(), &taskAPI.StartRequest{ID: id, ExecID: execID}); err != nil {
		hs.t.Fatalf("start %s %s: %v", id, execID, err)
	}
}

func (hs *harness) configPaths() []string {
	hs.cfgMu.Lock()
	defer hs.cfgMu.Unlock()
	return append([]string(nil), hs.cfgSeen...)
}
