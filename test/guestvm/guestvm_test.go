// Package guestvm boots the real guest image (Debian kernel + joey-agent as
// PID 1) under QEMU and drives containers in it over the agent protocol:
// the end-to-end proof of the guest side, without containerd.
package guestvm

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/agent"
	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/hypervisor/qemu"
	"github.com/joeyrt/joey/internal/ociimage"
	"github.com/joeyrt/joey/internal/testutil"
)

const guestShare = "/run/joey/shared"

// containerSpec is a runc-like spec for a busybox container whose rootfs is
// <share>/<id>/rootfs in the guest. It has no network namespace: containers
// use the VM's.
func containerSpec(id string, args ...string) *specs.Spec {
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: id,
		Root:     &specs.Root{Path: filepath.Join(guestShare, id, "rootfs")},
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/root"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  []string{"CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"},
				Effective: []string{"CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"},
				Permitted: []string{"CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"},
			},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces:    []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys"},
			ReadonlyPaths: []string{"/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

type guest struct {
	vm    hypervisor.VM
	c     *agent.Client
	share string
}

// boot starts the guest image with share as its 9p share and connects to
// the agent.
func boot(t *testing.T, share string) *guest {
	t.Helper()
	return bootImage(t, testutil.GuestImage(t), share, false)
}

// bootImage boots the image in img; debugConsole adds the debug console port.
func bootImage(t *testing.T, img, share string, debugConsole bool) *guest {
	t.Helper()
	testutil.RequireQEMU(t)
	d, err := qemu.New(qemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "vm")
	console := filepath.Join(t.TempDir(), "console.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("guest console:\n%s", tail(string(b), 60))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	testutil.CountVM(t)
	vm, err := d.Start(ctx, &hypervisor.Config{
		ID:           "guestvm",
		VCPUs:        1,
		MemoryMiB:    512,
		Kernel:       filepath.Join(img, "vmlinux"),
		Initrd:       filepath.Join(img, "initrd.img"),
		StateDir:     state,
		ConsoleLog:   console,
		AgentChannel: hypervisor.AgentChannel{Kind: hypervisor.ChannelSerial},
		SharedFS:     []hypervisor.SharedFS{{Tag: "share", Kind: hypervisor.SharedFS9P, HostPath: share}},
		DebugConsole: debugConsole,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vm.Stop(context.Background())
		if _, err := os.Stat(state); !os.IsNotExist(err) {
			t.Errorf("VM state dir %s left behind (%v)", state, err)
		}
	})
	c, err := agent.Connect(ctx, vm.AgentConn)
	if err != nil {
		t.Fatalf("agent did not answer: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &guest{vm: vm, c: c, share: share}
}

func (g *guest) createContainer(t *testing.T, id string, args ...string) {
	t.Helper()
	if err := ociimage.BusyboxRootfs(filepath.Join(g.share, id, "rootfs")); err != nil {
		t.Fatal(err)
	}
	spec, err := json.Marshal(containerSpec(id, args...))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := g.c.CreateContainer(ctx, &protocol.CreateContainerRequest{ContainerId: id, OciSpec: spec}); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

// run collects a process's stdout and stderr and waits for its exit.
func (g *guest) collect(t *testing.T, id, execID string) (stdout, stderr func() string, wait func() int32) {
	t.Helper()
	ctx := context.Background()
	var out, errb strings.Builder
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.c.CopyOutput(ctx, id, execID, agent.Stdout, &out) }()
	go func() { defer wg.Done(); g.c.CopyOutput(ctx, id, execID, agent.Stderr, &errb) }()
	return func() string { return out.String() }, func() string { return errb.String() }, func() int32 {
		w, err := g.c.WaitProcess(ctx, &protocol.WaitProcessRequest{ContainerId: id, ExecId: execID})
		if err != nil {
			t.Fatalf("wait %s/%s: %v", id, execID, err)
		}
		wg.Wait()
		return w.Status
	}
}

func TestGuestImageRunsContainersOverTheAgentProtocol(t *testing.T) {
	testutil.RequireRoot(t)
	share := t.TempDir()
	g := boot(t, share)
	ctx := context.Background()

	details, err := g.c.GuestDetails(ctx, &protocol.GuestDetailsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !details.CgroupV2 || !slices.Contains(details.LoadedModules, "9p") || !slices.Contains(details.LoadedModules, "virtio_console") {
		t.Fatalf("guest details = %+v", details)
	}
	t.Logf("guest kernel %s, %d modules loaded, %d MiB", details.KernelRelease, len(details.LoadedModules), details.MemoryTotalBytes>>20)

	_, err = g.c.CreateSandbox(ctx, &protocol.CreateSandboxRequest{
		SandboxId:     "sb",
		Hostname:      "joeyvm",
		Dns:           []string{"nameserver 127.0.0.53"},
		Storages:      []*protocol.Storage{{Driver: "9p", Source: "share", MountPoint: guestShare}},
		KernelModules: []*protocol.KernelModule{{Name: "overlay"}},
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("stdio and exit status", func(t *testing.T) {
		g.createContainer(t, "c1", "sh", "-c", "echo out; echo err >&2; read x; echo got $x; exit 3")
		stdout, stderr, wait := g.collect(t, "c1", "")
		if _, err := g.c.StartContainer(ctx, &protocol.StartContainerRequest{ContainerId: "c1"}); err != nil {
			t.Fatal(err)
		}
		if err := g.c.CopyInput(ctx, "c1", "", strings.NewReader("hi\n")); err != nil {
			t.Fatal(err)
		}
		if code := wait(); code != 3 {
			t.Errorf("exit status = %d, want 3", code)
		}
		if stdout() != "out\ngot hi\n" || stderr() != "err\n" {
			t.Errorf("stdout %q, stderr %q; want \"out\\ngot hi\\n\" and \"err\\n\"", stdout(), stderr())
		}
		if _, err := g.c.RemoveContainer(ctx, &protocol.RemoveContainerRequest{ContainerId: "c1"}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("exec, stats and SIGKILL", func(t *testing.T) {
		g.createContainer(t, "c2", "sleep", "1000")
		_, _, wait := g.collect(t, "c2", "")
		if _, err := g.c.StartContainer(ctx, &protocol.StartContainerRequest{ContainerId: "c2"}); err != nil {
			t.Fatal(err)
		}
		proc, _ := json.Marshal(&specs.Process{Args: []string{"sh", "-c", "echo exec-out; hostname; echo exec-err >&2; exit 5"},
			Env: []string{"PATH=/bin"}, Cwd: "/"})
		if _, err := g.c.ExecProcess(ctx, &protocol.ExecProcessRequest{ContainerId: "c2", ExecId: "e1", Process: proc}); err != nil {
			t.Fatal(err)
		}
		eout, eerr, ewait := g.collect(t, "c2", "e1")
		if code := ewait(); code != 5 {
			t.Errorf("exec exit status = %d, want 5", code)
		}
		if eout() != "exec-out\nc2\n" || eerr() != "exec-err\n" {
			t.Errorf("exec stdout %q stderr %q", eout(), eerr())
		}
		st, err := g.c.StatsContainer(ctx, &protocol.StatsContainerRequest{ContainerId: "c2"})
		if err != nil {
			t.Fatal(err)
		}
		if st.Memory.Usage == 0 || st.Pids.Current == 0 {
			t.Errorf("stats show no usage: memory %+v pids %+v", st.Memory, st.Pids)
		}
		ps, err := g.c.ListProcesses(ctx, &protocol.ListProcessesRequest{ContainerId: "c2"})
		if err != nil || len(ps.Pids) == 0 {
			t.Errorf("ListProcesses = %v, %v", ps, err)
		}
		if _, err := g.c.SignalProcess(ctx, &protocol.SignalProcessRequest{ContainerId: "c2", Signal: uint32(syscall.SIGKILL)}); err != nil {
			t.Fatal(err)
		}
		if code := wait(); code != 137 {
			t.Errorf("SIGKILLed sleep exit status = %d, want 137", code)
		}
	})

	t.Run("destroy powers the VM off", func(t *testing.T) {
		if _, err := g.c.DestroySandbox(ctx, &protocol.DestroySandboxRequest{}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-g.vm.Wait():
		case <-time.After(60 * time.Second):
			t.Fatal("VM still running 60 s after DestroySandbox")
		}
		if err := g.vm.ExitErr(); err != nil {
			t.Errorf("VM ended with %v, want a clean power-off", err)
		}
	})
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
