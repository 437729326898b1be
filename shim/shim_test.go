package shim

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/protobuf/proto"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/typeurl/v2"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/internal/procutil"
	"github.com/joeyrt/joey/runtime"
	"github.com/joeyrt/joey/shim/bundle"
)

// cleanupRecorder is a runtime handler that only records Cleanup calls.
type cleanupRecorder struct {
	mu    sync.Mutex
	calls []string // "ns/id JOEY_CONFIG=..."
}

func (h *cleanupRecorder) Name() string { return "shim-test-recorder" }

func (h *cleanupRecorder) CreateSandbox(context.Context, runtime.SandboxConfig) (runtime.Sandbox, error) {
	panic("the delete command must not create sandboxes")
}

func (h *cleanupRecorder) Cleanup(_ context.Context, ns, id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, ns+"/"+id+" "+config.EnvPath+"="+os.Getenv(config.EnvPath))
	return nil
}

func (h *cleanupRecorder) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.calls
	h.calls = nil
	return c
}

var recorder = &cleanupRecorder{}

func init() { runtime.Register(recorder) }

func deleteContext(bundleDir string) context.Context {
	ctx := namespaces.WithNamespace(context.Background(), "ns1")
	return context.WithValue(ctx, cshim.OptsKey{}, cshim.Opts{BundlePath: bundleDir})
}

func TestDeleteCleansUpOnlyAfterTheShimDied(t *testing.T) {
	t.Setenv(config.EnvPath, "")
	m := New(RuntimeName, recorder.Name())

	// A live process stands in for the sandbox's shim.
	shim := exec.Command("sleep", "60")
	if err := shim.Start(); err != nil {
		t.Fatal(err)
	}
	defer shim.Process.Kill()
	started, err := procutil.StartTime(shim.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec := bundle.Record{SandboxID: "pod", ConfigPath: "/etc/joey/pod.toml", Pid: 777,
		ShimPid: shim.Process.Pid, ShimStartTime: started}
	if err := bundle.WriteRecord(dir, rec); err != nil {
		t.Fatal(err)
	}

	st, err := m.Stop(deleteContext(dir), "app")
	if err != nil {
		t.Fatal(err)
	}
	if calls := recorder.take(); len(calls) != 0 {
		t.Fatalf("delete with the shim alive cleaned up %v", calls)
	}
	if st.ExitStatus != 137 || st.Pid != 777 || time.Since(st.ExitedAt) > time.Minute {
		t.Errorf("status = %+v, want 137 for pid 777 now", st)
	}

	shim.Process.Kill()
	shim.Wait()
	if _, err := m.Stop(deleteContext(dir), "app"); err != nil {
		t.Fatal(err)
	}
	want := "ns1/pod " + config.EnvPath + "=/etc/joey/pod.toml"
	if calls := recorder.take(); len(calls) != 1 || calls[0] != want {
		t.Errorf("Cleanup calls %q, want [%q]: the sandbox, with the configuration it was created with", calls, want)
	}
}

func TestDeleteOfANeverCreatedContainerCleansNothing(t *testing.T) {
	m := New(RuntimeName, recorder.Name())
	st, err := m.Stop(deleteContext(t.TempDir()), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if calls := recorder.take(); len(calls) != 0 {
		t.Errorf("cleaned up %v for a container that was never created", calls)
	}
	if st.ExitStatus != 137 {
		t.Errorf("exit status %d, want 137", st.ExitStatus)
	}
}

func TestStartJoinsTheRunningShimOfTheSandbox(t *testing.T) {
	socketDir, err := os.MkdirTemp("", "joey-shim-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(socketDir)
	bundleDir := t.TempDir()
	spec := `{"annotations":{"` + bundle.AnnotationContainerType + `":"container","` + bundle.AnnotationSandboxID + `":"pod"}}`
	if err := os.WriteFile(filepath.Join(bundleDir, bundle.SpecFile), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(bundleDir)

	ctx := namespaces.WithNamespace(context.Background(), "ns1")
	const grpc = "/run/test/containerd.sock"
	want, err := cshim.CreateSocketAddress(ctx, socketDir, grpc, "pod", false)
	if err != nil {
		t.Fatal(err)
	}
	// The pod's shim listens on the pod's address.
	l, err := listen(want)
	if err != nil || l == nil {
		t.Fatalf("listen = %v, %v", l, err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	params := &bootapi.BootstrapParams{InstanceID: "app", Namespace: "ns1", ContainerdGrpcAddress: grpc, SocketDir: &socketDir}
	res, err := New(RuntimeName, recorder.Name()).Start(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if res.Address != want || res.Protocol != "ttrpc" || res.Version != 3 {
		t.Errorf("Start = %+v, want the pod shim's address %s over ttrpc v3", res, want)
	}
}

func TestListenReplacesTheSocketOfADeadShim(t *testing.T) {
	dir, err := os.MkdirTemp("", "joey-shim-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	addr := "unix://" + filepath.Join(dir, "s")
	l, err := listen(addr)
	if err != nil || l == nil {
		t.Fatalf("first listen = %v, %v", l, err)
	}
	if again, err := listen(addr); err != nil || again != nil {
		t.Fatalf("listen on a live socket = %v, %v; want nil (join)", again, err)
	}
	// A shim killed with SIGKILL leaves its socket file behind.
	l.SetUnlinkOnClose(false)
	l.Close()
	l2, err := listen(addr)
	if err != nil || l2 == nil {
		t.Fatalf("listen over a dead shim's socket = %v, %v", l2, err)
	}
	l2.Close()
}

func TestInfoEchoesTheRuntimeOptions(t *testing.T) {
	m := New(RuntimeName, recorder.Name())
	info, err := m.Info(context.Background(), bytes.NewReader(nil))
	if err != nil || info.Name != RuntimeName || info.Options != nil {
		t.Fatalf("Info without options = %+v, %v", info, err)
	}
	a, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: "/x.toml"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	info, err = m.Info(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	v, err := typeurl.UnmarshalAny(info.Options)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := v.(*runtimeoptions.Options); !ok || o.ConfigPath != "/x.toml" {
		t.Errorf("Info options = %v", v)
	}
}

func TestBinaryOptsTurnTheReaperOff(t *testing.T) {
	var c cshim.Config
	BinaryOpts(&c)
	if !c.NoReaper || !c.NoSubreaper || c.NoSetupLogger {
		t.Errorf("config = %+v: the reaper would steal QEMU's exit status", c)
	}
	if !strings.HasSuffix(cshim.BinaryName(RuntimeName), "containerd-shim-joey-v2") {
		t.Errorf("containerd looks for %q", cshim.BinaryName(RuntimeName))
	}
}

func TestExitingReadsStateAndFlags(t *testing.T) {
	for _, c := range []struct {
		name string
		stat string
		want bool
	}{
		{"sleeping", "42 (containerd-shim) S 1 42 42 0 -1 4194560 100 0", false},
		{"running, name with spaces and parens", "42 (a b) c)) R 1 42 42 0 -1 4194560 100 0", false},
		{"zombie", "42 (containerd-shim) Z 1 42 42 0 -1 4194564 100 0", true},
		{"exit begun", "42 (containerd-shim) R 1 42 42 0 -1 4194564 100 0", true},
		{"dead", "42 (x) X 1 42 42 0 -1 0 0 0", true},
		{"malformed", "42 containerd-shim S", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := exiting([]byte(c.stat)); got != c.want {
				t.Errorf("exiting(%q) = %v, want %v", c.stat, got, c.want)
			}
		})
	}
}

func TestAZombieShimCountsAsDead(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started, err := procutil.StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// Not waited for: once it has exited, it stays a zombie.
	deadline := time.Now().Add(10 * time.Second)
	for shimAlive(cmd.Process.Pid, started) {
		if time.Now().After(deadline) {
			t.Fatal("an exited, unreaped child still counts as a live shim")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !procutil.Matches(cmd.Process.Pid, started) {
		t.Fatal("the zombie's /proc entry is gone: the test proved nothing")
	}
	cmd.Wait()
}
