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

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/runtime"
	"github.com/joeyrt/joey/test/cnitest"
)

func TestWantsOwnNetNSOnlyForANewNamespaceAndAChildVMM(t *testing.T) {
	withNS := func(ns ...specs.LinuxNamespace) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Namespaces: ns}}
	}
	for _, tc := range []struct {
		name       string
		hypervisor string
		spec       *specs.Spec
		want       bool
	}{
		{"new network namespace", config.HypervisorQEMU, withNS(specs.LinuxNamespace{Type: specs.NetworkNamespace}), true},
		{"CNI's namespace by path", config.HypervisorQEMU, withNS(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}), false},
		{"host network", config.HypervisorQEMU, withNS(specs.LinuxNamespace{Type: specs.PIDNamespace}), false},
		{"no linux section", config.HypervisorQEMU, &specs.Spec{}, false},
		{"in-process VMM has the shim's pid", config.HypervisorBuiltin, withNS(specs.LinuxNamespace{Type: specs.NetworkNamespace}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Runtime.Hypervisor = tc.hypervisor
			if got := wantsOwnNetNS(cfg, tc.spec); got != tc.want {
				t.Errorf("wantsOwnNetNS = %v, want %v", got, tc.want)
			}
		})
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
