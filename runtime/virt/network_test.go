package virt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/runtime"
	"github.com/joeyrt/joey/test/cnitest"
)

func TestPodNetNSIsTheSpecsNetworkNamespacePath(t *testing.T) {
	withNS := func(ns ...specs.LinuxNamespace) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Namespaces: ns}}
	}
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		want string
	}{
		{"no spec", nil, ""},
		{"no linux section", &specs.Spec{}, ""},
		{"new network namespace: no NIC", withNS(specs.LinuxNamespace{Type: specs.NetworkNamespace}), ""},
		{"no network namespace", withNS(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/proc/1/ns/pid"}), ""},
		{"CNI's namespace by path", withNS(
			specs.LinuxNamespace{Type: specs.PIDNamespace},
			specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"},
		), "/var/run/netns/cni-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := podNetNS(tc.spec); got != tc.want {
				t.Errorf("podNetNS = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFailedCreateSandboxLeavesThePodNamespaceAsCNILeftIt: whether the
// network setup itself fails or the VM after it, the pod's namespace
// keeps no TAP and no qdisc, and no state, mount or process remains.
func TestFailedCreateSandboxLeavesThePodNamespaceAsCNILeftIt(t *testing.T) {
	base := vmConfigForTest(t)
	node := cnitest.NewNode(t)
	pod := node.AddPod(t, "sb-netfail")
	before := cnitest.Snapshot(t, pod.Name)
	notNS := filepath.Join(t.TempDir(), "not-a-netns")
	if err := os.WriteFile(notNS, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a kernel\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, netns, kernel, want string
	}{
		{"path is no network namespace", notNS, "", "network setup"},
		{"VM cannot start after the network was joined", pod.NetNS, junk, "start vm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, base.Image.Dir)
			if tc.kernel != "" {
				cfg.Image.Kernel = tc.kernel
			}
			spec := containerSpec("true")
			joinNetNS(spec, tc.netns)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := New(cfg).CreateSandbox(ctx, runtime.SandboxConfig{ID: "sb-netfail", Namespace: "default", Spec: spec, Config: cfg})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CreateSandbox: %v, want an error containing %q", err, tc.want)
			}
			if after := cnitest.Snapshot(t, pod.Name); after != before {
				t.Errorf("pod namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if _, err := os.Stat(filepath.Join(cfg.Runtime.StateDir, "default", "sb-netfail")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state directory left: %v", err)
			}
			if ps := processesMentioning(t, cfg.Runtime.StateDir); len(ps) != 0 {
				t.Errorf("processes left: %q", ps)
			}
		})
	}
}

// TestCleanupFromStateRemovesThePodNetworkDevices: after the shim that ran
// a networked sandbox died, Cleanup, knowing only the persisted state,
// kills the VM and takes the TAP and the tc filters out of the pod's
// namespace.
func TestCleanupFromStateRemovesThePodNetworkDevices(t *testing.T) {
	cfg := vmConfigForTest(t)
	node := cnitest.NewNode(t)
	pod := node.AddPod(t, "sb-netclean")
	before := cnitest.Snapshot(t, pod.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := containerSpec("true")
	joinNetNS(spec, pod.NetNS)
	const id = "sb-netclean"
	testutil.CountVM(t)
	sb, err := New(cfg).CreateSandbox(ctx, runtime.SandboxConfig{ID: id, Namespace: "default", Spec: spec, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	// The in-process sandbox is what a dead shim would have held; it is
	// shut down only after the check, so as not to do Cleanup's work.
	defer sb.Shutdown(context.Background())
	if during := cnitest.Snapshot(t, pod.Name); !strings.Contains(during, "tap0_joey") || !strings.Contains(during, "qdisc ingress") {
		t.Fatalf("no TAP and ingress qdisc in the pod namespace while the VM runs:\n%s", during)
	}
	if err := New(cfg).Cleanup(ctx, "default", id); err != nil {
		t.Fatal(err)
	}
	if after := cnitest.Snapshot(t, pod.Name); after != before {
		t.Errorf("pod namespace after Cleanup:\n%s\nwant as CNI left it:\n%s", after, before)
	}
	if ps := processesMentioning(t, cfg.Runtime.StateDir); len(ps) != 0 {
		t.Errorf("processes left: %q", ps)
	}
}

// joinNetNS makes spec's network namespace the one at path, as CRI does.
func joinNetNS(spec *specs.Spec, path string) {
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = path
			return
		}
	}
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
}

func TestNetShapeGivesTheBuiltinVMMOneQueueWithoutVhost(t *testing.T) {
	for _, tc := range []struct {
		hypervisor string
		want       netShape
	}{
		{config.HypervisorQEMU, netShape{model: "tcfilter", queues: 4}},
		{config.HypervisorBuiltin, netShape{model: "tcfilter", queues: 1, noVhost: true}},
	} {
		t.Run(tc.hypervisor, func(t *testing.T) {
			cfg := config.Default()
			cfg.Runtime.Hypervisor = tc.hypervisor
			cfg.Runtime.NetworkModel = "tcfilter"
			if got := newNetShape(cfg, 4); got != tc.want {
				t.Errorf("newNetShape = %+v, want %+v", got, tc.want)
			}
		})
	}
}
