package service

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/joeyrt/joey/internal/procutil"
	"github.com/joeyrt/joey/runtime"
	"github.com/joeyrt/joey/shim/bundle"
)

func TestRunToExitPublishesCreateStartExitDeleteInOrder(t *testing.T) {
	h := &fakeHandler{programs: map[string]program{"c1": prints("hello\n", "oops\n", 3)}}
	hs := newHarness(t, h)
	cio := hs.newClientIO("c1")

	// At the moment the exit goes out, the output must be complete and
	// its fifos closed, or `ctr run` would miss the tail or hang.
	var outAtExit, errAtExit string
	var readErr error
	var exitSeen atomic.Bool
	hs.rec.onExit = func(e *eventstypes.TaskExit) {
		outAtExit, readErr = readAll(cio.out)
		if readErr == nil {
			errAtExit, readErr = readAll(cio.err)
		}
		exitSeen.Store(true)
	}

	resp := hs.create("c1", hs.bundle("c1", nil), cio, false)
	if resp.Pid != fakePid {
		t.Errorf("create pid = %d, want the VMM's %d", resp.Pid, fakePid)
	}
	hs.start("c1", "")
	w, err := hs.api.Wait(hs.ctx(), &taskAPI.WaitRequest{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if !exitSeen.Load() {
		t.Error("Wait answered before the exit event was published")
	}
	if w.ExitStatus != 3 || w.ExitedAt == nil {
		t.Errorf("Wait = %d at %v, want 3 with a time", w.ExitStatus, w.ExitedAt)
	}
	if readErr != nil || outAtExit != "hello\n" || errAtExit != "oops\n" {
		t.Errorf("at the exit event: stdout %q, stderr %q, %v; want both streams whole and closed", outAtExit, errAtExit, readErr)
	}
	st, err := hs.api.State(hs.ctx(), &taskAPI.StateRequest{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != task.Status_STOPPED || st.ExitStatus != 3 || st.Stdout != cio.stdout || st.Pid != fakePid || st.ID != "c1" {
		t.Errorf("State = %+v", st)
	}
	d, err := hs.api.Delete(hs.ctx(), &taskAPI.DeleteRequest{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if d.ExitStatus != 3 || d.Pid != fakePid {
		t.Errorf("Delete = %+v", d)
	}
	want := []string{
		"create c1 pid=4242",
		"start c1 pid=4242",
		"exit c1/c1 pid=4242 status=3",
		"delete c1 pid=4242 status=3",
	}
	if got := hs.rec.list(); !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := h.sandbox(0).shutdownCount(); n != 1 {
		t.Errorf("sandbox shut down %d times after its only container was deleted, want 1", n)
	}
	if _, err := hs.api.State(hs.ctx(), &taskAPI.StateRequest{ID: "c1"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("State after Delete = %v, want NotFound", err)
	}
}

func TestCreateBootsSandboxFromTheBundleAndRecordsIt(t *testing.T) {
	h := &fakeHandler{}
	hs := newHarness(t, h)
	dir := hs.bundle("c1", map[string]string{"x": "y"})
	opts, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: "/etc/joey/other.toml"})
	if err != nil {
		t.Fatal(err)
	}
	rootfs := []*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l", "upperdir=/u", "workdir=/w"}}}
	_, err = hs.api.Create(hs.ctx(), &taskAPI.CreateTaskRequest{ID: "c1", Bundle: dir, Options: opts, Rootfs: rootfs})
	if err != nil {
		t.Fatal(err)
	}
	if got := hs.configPaths(); !slices.Equal(got, []string{"/etc/joey/other.toml"}) {
		t.Errorf("configuration loaded from %q, want the runtime option's path", got)
	}
	sb := h.sandbox(0)
	if sb.cfg.ID != "c1" || sb.cfg.Namespace != testNamespace || sb.cfg.Bundle != dir || sb.cfg.Spec.Annotations["x"] != "y" {
		t.Errorf("sandbox config = %+v", sb.cfg)
	}
	fc, _ := sb.Container("c1")
	if got := fc.(*fakeContainer).cfg.Rootfs; len(got) != 1 || got[0].Type != "overlay" || len(got[0].Options) != 3 || got[0].Options[1] != "upperdir=/u" {
		t.Errorf("runtime got rootfs %+v", got)
	}
	rec, err := bundle.ReadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rec.SandboxID != "c1" || rec.ConfigPath != "/etc/joey/other.toml" || rec.Pid != fakePid ||
		rec.ShimPid != os.Getpid() || !procutil.Matches(rec.ShimPid, rec.ShimStartTime) {
		t.Errorf("bundle record = %+v", rec)
	}
}

func TestRuntimeOptionsPickTheConfigFile(t *testing.T) {
	any := func(v any) *anypb.Any {
		a, err := typeurl.MarshalAnyToProto(v)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, c := range []struct {
		name    string
		opts    *anypb.Any
		want    string
		wantErr bool
	}{
		{"none", nil, "", false},
		{"runtimeoptions", any(&runtimeoptions.Options{ConfigPath: "/x.toml"}), "/x.toml", false},
		{"runc options are ignored", any(&options.Options{BinaryName: "runc"}), "", false},
		{"anything else is refused", any(&options.ProcessDetails{ExecID: "e"}), "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := configPathFrom(context.Background(), c.opts)
			if (err != nil) != c.wantErr || got != c.want {
				t.Fatalf("configPathFrom = %q, %v; want %q (error: %v)", got, err, c.want, c.wantErr)
			}
			if err != nil && !errdefs.IsInvalidArgument(err) {
				t.Errorf("error %v is not an invalid argument", err)
			}
		})
	}
}

func TestExecLifecycle(t *testing.T) {
	h := &fakeHandler{programs: map[string]program{
		"c1/e1": func(r *fakeRun) uint32 {
			r.IO.Stdout.Write([]byte(strings.Join(r.Spec.Args, " ")))
			return 7
		},
	}}
	hs := newHarness(t, h)
	hs.create("c1", hs.bundle("c1", nil), nil, false)
	hs.start("c1", "")
	eio := hs.newClientIO("e1")
	spec, err := typeurl.MarshalAnyToProto(&specs.Process{Args: []string{"echo", "from", "exec"}, Cwd: "/"})
	if err != nil {
		t.Fatal(err)
	}
	exec := &taskAPI.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: spec, Stdin: eio.stdin, Stdout: eio.stdout, Stderr: eio.stderr}
	if _, err := hs.api.Exec(hs.ctx(), exec); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.api.Exec(hs.ctx(), exec); !errdefs.IsAlreadyExists(errgrpc.ToNative(err)) {
		t.Errorf("second exec with the same id = %v, want AlreadyExists", err)
	}
	st, err := hs.api.State(hs.ctx(), &taskAPI.StateRequest{ID: "c1", ExecID: "e1"})
	if err != nil || st.Status != task.Status_CREATED || st.ExecID != "e1" || st.ID != "e1" {
		t.Errorf("State of the created exec = %+v, %v", st, err)
	}
	hs.start("c1", "e1")
	w, err := hs.api.Wait(hs.ctx(), &taskAPI.WaitRequest{ID: "c1", ExecID: "e1"})
	if err != nil || w.ExitStatus != 7 {
		t.Fatalf("Wait for exec = %+v, %v; want 7", w, err)
	}
	if out, err := readAll(eio.out); err != nil || out != "echo from exec" {
		t.Errorf("exec stdout = %q, %v", out, err)
	}
	d, err := hs.api.Delete(hs.ctx(), &taskAPI.DeleteRequest{ID: "c1", ExecID: "e1"})
	if err != nil || d.ExitStatus != 7 {
		t.Errorf("Delete exec = %+v, %v", d, err)
	}
	if _, err := hs.api.State(hs.ctx(), &taskAPI.StateRequest{ID: "c1", ExecID: "e1"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("State of a deleted exec = %v, want NotFound", err)
	}
	want := []string{
		"create c1 pid=4242",
		"start c1 pid=4242",
		"exec-added c1/e1",
		"exec-started c1/e1 pid=4242",
		"exit c1/e1 pid=4242 status=7",
	}
	if got := hs.rec.list(); !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := h.sandbox(0).shutdownCount(); n != 0 {
		t.Errorf("deleting an exec shut the sandbox down")
	}
}

func TestKillAllPublishesTheInitExitLast(t *testing.T) {
	h := &fakeHandler{}
	hs := newHarness(t, h)
	hs.create("c1", hs.bundle("c1", nil), nil, false)
	hs.start("c1", "")
	spec, _ := typeurl.MarshalAnyToProto(&specs.Process{Args: []string{"sleep"}})
	for _, id := range []string{"e1", "e2"} {
		if _, err := hs.api.Exec(hs.ctx(), &taskAPI.ExecProcessRequest{ID: "c1", ExecID: id, Spec: spec}); err != nil {
			t.Fatal(err)
		}
		hs.start("c1", id)
	}
	if _, err := hs.api.Kill(hs.ctx(), &taskAPI.KillRequest{ID: "c1", Signal: uint32(syscall.SIGKILL), All: true}); err != nil {
		t.Fatal(err)
	}
	w, err := hs.api.Wait(hs.ctx(), &taskAPI.WaitRequest{ID: "c1"})
	if err != nil || w.ExitStatus != 137 {
		t.Fatalf("Wait = %+v, %v; want 137", w, err)
	}
	got := hs.rec.list()
	last := got[len(got)-1]
	if last != "exit c1/c1 pid=4242 status=137" {
		t.Errorf("last event %q, want the init's exit; events:\n%s", last, strings.Join(got, "\n"))
	}
	for _, id := range []string{"e1", "e2"} {
		if !contains(got, "exit c1/"+id+" pid=4242 status=137") {
			t.Errorf("no exit of %s; events:\n%s", id, strings.Join(got, "\n"))
		}
	}
	if _, err := hs.api.Kill(hs.ctx(), &taskAPI.KillRequest{ID: "c1", Signal: uint32(syscall.SIGKILL)}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("kill of an exited init = %v, want NotFound (what containerd's forced delete ignores)", err)
	}
	if _, err := hs.api.Start(hs.ctx(), &taskAPI.StartRequest{ID: "c1", ExecID: "e3"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("start of an unknown exec = %v, want NotFound", err)
	}
	if _, err := hs.api.Exec(hs.ctx(), &taskAPI.ExecProcessRequest{ID: "c1", ExecID: "e3", Spec: spec}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Errorf("exec after the init exited = %v, want FailedPrecondition", err)
	}
}

func TestKillOneProcessWithSignal(t *testing.T) {
	hs := newHarness(t, &fakeHandler{})
	hs.create("c1", hs.bundle("c1", nil), nil, false)
	hs.start("c1", "")
	if _, err := hs.api.Kill(hs.ctx(), &taskAPI.KillRequest{ID: "c1", Signal: uint32(syscall.SIGTERM)}); err != nil {
		t.Fatal(err)
	}
	w, err := hs.api.Wait(hs.ctx(), &taskAPI.WaitRequest{ID: "c1"})
	if err != nil || w.ExitStatus != 128+uint32(syscall.SIGTERM) {
		t.Fatalf("Wait = %+v, %v; want 143", w, err)
	}
}

func TestErrorsBecomeStatusCodes(t *testing.T) {
	h := &fakeHandler{}
	hs := newHarness(t, h)
	hs.create("c1", hs.bundle("c1", nil), nil, false)
	hs.start("c1", "")
	badRes, _ := typeurl.MarshalAnyToProto(&specs.Process{})
	joiner := hs.bundle("c9", map[string]string{
		bundle.AnnotationContainerType: bundle.ContainerTypeContainer,
		bundle.AnnotationSandboxID:     "elsewhere",
	})
	ctx := hs.ctx()
	for _, c := range []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"state of an unknown container", func() error {
			_, err := hs.api.State(ctx, &taskAPI.StateRequest{ID: "nope"})
			return err
		}, codes.NotFound},
		{"start twice", func() error {
			_, err := hs.api.Start(ctx, &taskAPI.StartRequest{ID: "c1"})
			return err
		}, codes.FailedPrecondition},
		{"delete a running container", func() error {
			_, err := hs.api.Delete(ctx, &taskAPI.DeleteRequest{ID: "c1"})
			return err
		}, codes.FailedPrecondition},
		{"checkpoint", func() error {
			_, err := hs.api.Checkpoint(ctx, &taskAPI.CheckpointTaskRequest{ID: "c1"})
			return err
		}, codes.Unimplemented},
		{"create an existing container", func() error {
			_, err := hs.api.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: hs.bundle("c1", nil)})
			return err
		}, codes.AlreadyExists},
		{"join a sandbox this shim does not run", func() error {
			_, err := hs.api.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c9", Bundle: joiner})
			return err
		}, codes.FailedPrecondition},
		{"update with something that is not resources", func() error {
			_, err := hs.api.Update(ctx, &taskAPI.UpdateTaskRequest{ID: "c1", Resources: badRes})
			return err
		}, codes.InvalidArgument},
		{"resize a process without a terminal", func() error {
			_, err := hs.api.ResizePty(ctx, &taskAPI.ResizePtyRequest{ID: "c1", Width: 80, Height: 24})
			return err
		}, codes.FailedPrecondition},
		{"resume a container that is not paused", func() error {
			_, err := hs.api.Resume(ctx, &taskAPI.ResumeRequest{ID: "c1"})
			return err
		}, codes.FailedPrecondition},
		{"exec without an id", func() error {
			_, err := hs.api.Exec(ctx, &taskAPI.ExecProcessRequest{ID: "c1", Spec: badRes})
			return err
		}, codes.InvalidArgument},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if got := status.Code(err); got != c.want {
				t.Errorf("code %v (%v), want %v", got, err, c.want)
			}
		})
	}
	if n := h.sandboxCount(); n != 1 {
		t.Errorf("%d sandboxes booted, want 1", n)
	}
}

func TestFailedCreateStopsTheSandboxItBooted(t *testing.T) {
	h := &fakeHandler{failCreateContainer: errdefs.ErrInvalidArgument}
	hs := newHarness(t, h)
	_, err := hs.api.Create(hs.ctx(), &taskAPI.CreateTaskRequest{ID: "c1", Bundle: hs.bundle("c1", nil)})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Create = %v, want the runtime's InvalidArgument", err)
	}
	if n := h.sandbox(0).shutdownCount(); n != 1 {
		t.Errorf("the booted sandbox was shut down %d times, want 1", n)
	}
	if got := hs.rec.list(); len(got) != 0 {
		t.Errorf("a failed create published %v", got)
	}
	if _, err := hs.api.State(hs.ctx(), &taskAPI.StateRequest{ID: "c1"}); status.Code(err) != codes.NotFound {
		t.Errorf("State after a failed create = %v, want NotFound", err)
	}
}

func TestCRIContainersShareTheSandboxUntilTheLastIsDeleted(t *testing.T) {
	h := &fakeHandler{programs: map[string]program{"app": prints("", "", 0)}}
	hs := newHarness(t, h)
	hs.create("pod", hs.bundle("pod", map[string]string{
		bundle.AnnotationContainerType: bundle.ContainerTypeSandbox,
		bundle.AnnotationSandboxID:     "pod",
	}), nil, false)
	hs.start("pod", "")
	resp := hs.create("app", hs.bundle("app", map[string]string{
		bundle.AnnotationContainerType: bundle.ContainerTypeContainer,
		bundle.AnnotationSandboxID:     "pod",
	}), nil, false)
	if n := h.sandboxCount(); n != 1 {
		t.Fatalf("%d sandboxes booted for one pod", n)
	}
	if resp.Pid != fakePid {
		t.Errorf("second container's pid %d, want the sandbox's %d", resp.Pid, fakePid)
	}
	sb := h.sandbox(0)
	if ids := sb.Containers(); len(ids) != 2 {
		t.Errorf("sandbox holds %v", ids)
	}
	hs.start("app", "")
	if _, err := hs.api.Wait(hs.ctx(), &taskAPI.WaitRequest{ID: "app"}); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.api.Delete(hs.ctx(), &taskAPI.DeleteRequest{ID: "app"}); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.api.Shutdown(hs.ctx(), &taskAPI.ShutdownRequest{ID: "app"}); err != nil {
		t.Fatal(err)
	}
	if sb.shutdownCount() != 0 {
		t.Fatal("the sandbox stopped while its pause container was still there")
	}
	select {
	case <-hs.sd.Done():
		t.Fatal("the shim shut down with a container left")
	default:
	}
	if _, err := hs.api.Kill(hs.ctx(), &taskAPI.KillRequest{ID: "pod", Signal: uint32(syscall.SIGKILL)}); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.api.Wait(hs.ctx(), &taskAPI.WaitRequest{ID: "pod"}); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.api.Delete(hs.ctx(), &taskAPI.DeleteRequest{ID: "pod"}); err != nil {
		t.Fatal(err)
	}
	if sb.shutdownCount() != 1 {
		t.Errorf("sandbox shut down %d times after its last container, want 1", sb.shutdownCount())
	}
	if _, err := hs.api.Shutdown(hs.ctx(), &taskAPI.ShutdownRequest{ID: "pod"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hs.sd.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the shim did not shut down after its last container")
	}
	if !hs.rec.isClosed() {
		t.Error("the event publisher was not closed at shutdown")
	}
}

func TestShutdownStopsASandboxThatStillRuns(t *testing.T) {
	h := &fakeHandler{}
	hs := newHarness(t, h)
	hs.create("c1", hs.bundle("c1", nil), nil, false)
	hs.sd.Shutdown() // SIGTERM to the shim
	select {
	case <-hs.sd.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	if n := h.sandbox(0).shutdownCount(); n != 1 {
		t.Errorf("sandbox shut down %d times by the shim's shutdown, want 1", n)
	}
}

func TestPauseResumeStatsPidsUpdate(t *testing.T) {
	h := &fakeHandler{}
	hs := newHarness(t, h)
	hs.create("c1", hs.bundle("c1", nil), nil, false)
	hs.start("c1", "")
	spec, _ := typeurl.MarshalAnyToProto(&specs.Process{Args: []string{"sleep"}})
	if _, err := hs.api.Exec(hs.ctx(), &taskAPI.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	hs.start("c1", "e1")

	if _, err := hs.api.Pause(hs.ctx(), &taskAPI.PauseRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.api.Resume(hs.ctx(), &taskAPI.ResumeRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	got := hs.rec.waitEvents(t, "pause and resume", func(ev []string) bool { return contains(ev, "resumed c1") })
	if i, j := slices.Index(got, "paused c1"), slices.Index(got, "resumed c1"); i < 0 || j < i {
		t.Errorf("events:\n%s", strings.Join(got, "\n"))
	}

	st, err := hs.api.Stats(hs.ctx(), &taskAPI.StatsRequest{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := typeurl.UnmarshalAny(st.Stats)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(*cgroupsv2.Metrics)
	if !ok || m.Pids.GetCurrent() != 2 || m.Memory.GetUsage() != 1<<20 {
		t.Errorf("stats decode to %T %v", v, v)
	}

	pids, err := hs.api.Pids(hs.ctx(), &taskAPI.PidsRequest{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	execs := map[uint32]string{}
	for _, p := range pids.Processes {
		if p.Info == nil {
			execs[p.Pid] = ""
			continue
		}
		d, err := typeurl.UnmarshalAny(p.Info)
		if err != nil {
			t.Fatal(err)
		}
		execs[p.Pid] = d.(*options.ProcessDetails).ExecID
	}
	if len(execs) != 2 || execs[1] != "" || execs[101] != "e1" {
		t.Errorf("Pids = %v, want the init (1) and exec e1 (101)", execs)
	}

	res, _ := typeurl.MarshalAnyToProto(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(50))}})
	if _, err := hs.api.Update(hs.ctx(), &taskAPI.UpdateTaskRequest{ID: "c1", Resources: res}); err != nil {
		t.Fatal(err)
	}
	fc, _ := h.sandbox(0).Container("c1")
	if u := fc.(*fakeContainer).updates; len(u) != 1 || u[0].Pids == nil || *u[0].Pids.Limit != 50 {
		t.Errorf("runtime got updates %+v", u)
	}

	c, err := hs.api.Connect(hs.ctx(), &taskAPI.ConnectRequest{ID: "c1"})
	if err != nil || c.ShimPid != uint32(os.Getpid()) || c.TaskPid != fakePid {
		t.Errorf("Connect = %+v, %v", c, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestTerminalResizeAndStdinClose(t *testing.T) {
	echoed := make(chan struct{})
	// Echoes what it reads until the runtime closes its stdin.
	echo := func(r *fakeRun) uint32 {
		buf := make([]byte, 64)
		n, _ := r.IO.Stdin.Read(buf)
		r.IO.Stdout.Write(buf[:n])
		close(echoed)
		<-r.StdinClosed
		return 0
	}
	h := &fakeHandler{programs: map[string]program{"c1": echo}}
	hs := newHarness(t, h)
	cio := hs.newClientIO("c1")
	hs.create("c1", hs.bundle("c1", nil), cio, true)
	fc, _ := h.sandbox(0).Container("c1")
	if io := fc.(*fakeContainer).cfg.IO; !io.Terminal || io.Stderr != nil || io.Stdin == nil {
		t.Errorf("runtime IO for a terminal = %+v", io)
	}
	hs.start("c1", "")
	if _, err := hs.api.ResizePty(hs.ctx(), &taskAPI.ResizePtyRequest{ID: "c1", Width: 120, Height: 40}); err != nil {
		t.Fatal(err)
	}
	if _, err := cio.in.Write([]byte("typed")); err != nil {
		t.Fatal(err)
	}
	<-echoed
	// The client keeps its end of stdin open; CloseIO ends the stream.
	if _, err := hs.api.CloseIO(hs.ctx(), &taskAPI.CloseIORequest{ID: "c1", Stdin: true}); err != nil {
		t.Fatal(err)
	}
	w, err := hs.api.Wait(hs.ctx(), &taskAPI.WaitRequest{ID: "c1"})
	if err != nil || w.ExitStatus != 0 {
		t.Fatalf("Wait = %+v, %v", w, err)
	}
	if out, err := readAll(cio.out); err != nil || out != "typed" {
		t.Errorf("terminal output = %q, %v", out, err)
	}
	c := fc.(*fakeContainer)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Equal(c.resized, []string{`"" 120x40`}) || !slices.Equal(c.closedIO, []string{""}) {
		t.Errorf("runtime saw resizes %v and stdin closes %v", c.resized, c.closedIO)
	}
}

func TestSandboxEventsBecomeTaskEvents(t *testing.T) {
	h := &fakeHandler{}
	hs := newHarness(t, h)
	hs.create("run", hs.bundle("run", nil), nil, false)
	hs.start("run", "")
	sb := h.sandbox(0)

	sb.cfg.Events(runtime.Event{Kind: runtime.EventOOM, ContainerID: "run"})
	hs.rec.waitEvents(t, "the OOM event", func(ev []string) bool { return contains(ev, "oom run") })

	// The runtime marks every process of a dead VM exited: the running
	// init's exit comes through its waiter.
	sb.vmDies()
	w, err := hs.api.Wait(hs.ctx(), &taskAPI.WaitRequest{ID: "run"})
	if err != nil || w.ExitStatus != 255 {
		t.Fatalf("Wait after the VM died = %+v, %v; want 255", w, err)
	}
	hs.rec.waitEvents(t, "the exit after the VM died", func(ev []string) bool {
		return contains(ev, "exit run/run pid=4242 status=255")
	})
}

func TestVMDeathReportsContainersThatNeverStarted(t *testing.T) {
	h := &fakeHandler{}
	hs := newHarness(t, h)
	hs.create("c1", hs.bundle("c1", nil), nil, false)
	h.sandbox(0).vmDies()
	hs.rec.waitEvents(t, "an exit for the created container", func(ev []string) bool {
		return contains(ev, "exit c1/c1 pid=4242 status=255")
	})
	w, err := hs.api.Wait(hs.ctx(), &taskAPI.WaitRequest{ID: "c1"})
	if err != nil || w.ExitStatus != 255 {
		t.Errorf("Wait = %+v, %v", w, err)
	}
	if _, err := hs.api.Start(hs.ctx(), &taskAPI.StartRequest{ID: "c1"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Start after the VM died = %v, want FailedPrecondition", err)
	}
	d, err := hs.api.Delete(hs.ctx(), &taskAPI.DeleteRequest{ID: "c1"})
	if err != nil || d.ExitStatus != 255 {
		t.Errorf("Delete = %+v, %v", d, err)
	}
}

func TestDeleteOfACreatedContainerNeedsNoStart(t *testing.T) {
	h := &fakeHandler{}
	hs := newHarness(t, h)
	cio := hs.newClientIO("c1")
	hs.create("c1", hs.bundle("c1", nil), cio, false)
	if _, err := hs.api.Delete(hs.ctx(), &taskAPI.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(cio.out); err != nil {
		t.Errorf("stdout of a deleted, never started container is not closed: %v", err)
	}
	want := []string{"create c1 pid=4242", "delete c1 pid=4242 status=0"}
	if got := hs.rec.list(); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestFileLogURIReceivesOutput(t *testing.T) {
	h := &fakeHandler{programs: map[string]program{"c1": prints("out\n", "err\n", 0)}}
	hs := newHarness(t, h)
	logPath := filepath.Join(t.TempDir(), "c1.log")
	uri := "file://" + logPath
	if _, err := hs.api.Create(hs.ctx(), &taskAPI.CreateTaskRequest{ID: "c1", Bundle: hs.bundle("c1", nil), Stdout: uri, Stderr: uri}); err != nil {
		t.Fatal(err)
	}
	hs.start("c1", "")
	if _, err := hs.api.Wait(hs.ctx(), &taskAPI.WaitRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(logPath); err != nil || string(data) != "out\nerr\n" {
		t.Errorf("log file = %q, %v", data, err)
	}
}
