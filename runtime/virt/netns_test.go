package virt

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/internal/netnsexec"
	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/runtime"
	"github.com/joeyrt/joey/test/cnitest"
)

func TestWantsOwnNetNSOnlyForANewNamespace(t *testing.T) {
	withNS := func(ns ...specs.LinuxNamespace) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Namespaces: ns}}
	}
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		want bool
	}{
		{"new network namespace", withNS(specs.LinuxNamespace{Type: specs.NetworkNamespace}), true},
		{"CNI's namespace by path", withNS(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}), false},
		{"host network", withNS(specs.LinuxNamespace{Type: specs.PIDNamespace}), false},
		{"no linux section", &specs.Spec{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := wantsOwnNetNS(tc.spec); got != tc.want {
				t.Errorf("wantsOwnNetNS = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestHolderLivesInTheNamespaceUntilItsStdinCloses: the holder, which an
// in-process VMM's sandbox reports as its task pid, is born in the
// sandbox's namespace, apart from the runtime's process group, and ends
// by itself once its stdin closes (as when the shim dies).
func TestHolderLivesInTheNamespaceUntilItsStdinCloses(t *testing.T) {
	testutil.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "ns")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := netnsexec.Create(path); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(path, unix.MNT_DETACH)
	h, err := startHolder(path)
	if err != nil {
		t.Fatal(err)
	}
	var want, got unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Join("/proc", strconv.Itoa(h.Pid()), "ns/net"), &got); err != nil {
		t.Fatal(err)
	}
	if got.Ino != want.Ino || got.Dev != want.Dev {
		t.Errorf("holder's netns is %d:%d, want the sandbox's %d:%d", got.Dev, got.Ino, want.Dev, want.Ino)
	}
	if pgid, _ := unix.Getpgid(h.Pid()); pgid != h.Pid() {
		t.Errorf("holder's process group is %d, want its own", pgid)
	}
	select {
	case <-h.exited:
		t.Fatal("the holder exited on its own")
	case <-time.After(100 * time.Millisecond):
	}
	h.stdin.Close()
	select {
	case <-h.exited:
	case <-time.After(holderWait):
		t.Fatal("the holder still runs after its stdin closed")
	}
	if !h.cmd.ProcessState.Success() {
		t.Errorf("holder ended with %v, want a clean exit", h.cmd.ProcessState)
	}
	if err := h.stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestVMMRunsInTheSandboxsOwnNetNS: for a spec asking for a new network
// namespace the VMM (the task pid containerd sees, where `ctr run --cni`
// puts CNI) is not in the host's namespace, and Shutdown leaves no bind
// mount of it behind.
func TestVMMRunsInTheSandboxsOwnNetNS(t *testing.T) {
	cfg := vmConfigForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testutil.CountVM(t)
	sb, err := New(cfg).CreateSandbox(ctx, runtime.SandboxConfig{ID: "sb-ownns", Namespace: "default", Spec: containerSpec("true"), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Shutdown(context.Background())
	vmmNS, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(sb.Pid()), "ns/net"))
	if err != nil {
		t.Fatal(err)
	}
	hostNS, err := startNetNS, startNetNSErr
	if err != nil {
		t.Fatal(err)
	}
	if vmmNS == hostNS {
		t.Errorf("the VMM (pid %d) runs in the host's network namespace %s", sb.Pid(), hostNS)
	}
	ownFile := filepath.Join(cfg.Runtime.StateDir, "default", "sb-ownns", ownNetNSFile)
	if !isMounted(t, ownFile) {
		t.Errorf("%s is not a bind mount of the sandbox's namespace", ownFile)
	}
	if err := sb.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, cfg.Runtime.StateDir); len(left) != 0 {
		t.Errorf("mounts left after Shutdown: %q", left)
	}
}

func isMounted(t *testing.T, path string) bool {
	t.Helper()
	for _, m := range mountsUnder(t, filepath.Dir(path)) {
		if m == path {
			return true
		}
	}
	return false
}

// TestNetworkSetUpBetweenCreateAndStartIsHotplugged does what `ctr run
// --cni` does: CNI configures the namespace the task's pid lives in after
// the sandbox was created, before its container starts. On q35 the NIC is
// hot-added at Start and the container serves a port the node reaches.
func TestNetworkSetUpBetweenCreateAndStartIsHotplugged(t *testing.T) {
	cfg := vmConfigForTest(t)
	cfg.Hypervisor.QEMU.Machine = config.MachineQ35
	node := cnitest.NewNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bundle := busyboxBundle(t)
	spec := containerSpec("nc", "-ll", "-p", "8080", "-e", "echo", "hello-from-hotplug")
	const id = "sb-late"
	testutil.CountVM(t)
	sb, err := New(cfg).CreateSandbox(ctx, runtime.SandboxConfig{ID: id, Namespace: "default", Spec: spec, Bundle: bundle, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Shutdown(context.Background())
	c, err := sb.CreateContainer(ctx, runtime.ContainerConfig{ID: id, Bundle: bundle, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	taskNetNS := filepath.Join("/proc", strconv.Itoa(sb.Pid()), "ns/net")
	pod := node.AddPodAt(t, id, taskNetNS)
	if err := c.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
	var got string
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		conn, err := cnitest.Dial(node.NetNS, pod.IP+":8080", 5*time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			b, _ := io.ReadAll(conn)
			conn.Close()
			if got = strings.TrimSpace(string(b)); got != "" {
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got != "hello-from-hotplug" {
		t.Fatalf("node -> pod %s:8080 got %q", pod.IP, got)
	}
	if err := sb.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, cfg.Runtime.StateDir); len(left) != 0 {
		t.Errorf("mounts left after Shutdown: %q", left)
	}
}

// startNetNS is the test process's network namespace, read while package
// variables are initialised, before any test ran. Later, /proc/self shows
// the main thread's namespace, and the thread that made a sandbox's
// namespace may have been the main thread, which Go parks instead of ending.
var startNetNS, startNetNSErr = os.Readlink("/proc/thread-self/ns/net")
