// Package builtinrun runs containers end to end on real KVM, which our
// machines only have nested: `joey run` with the built-in VMM and with
// QEMU's KVM accelerator (stdio, exit status), and the virt runtime's
// exec and kill paths in process, as the shim drives them. The outer test
// re-runs this test binary inside the nested-KVM harness's L1 guest.
package builtinrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/hypervisor/drivers"
	"github.com/joeyrt/joey/internal/ociimage"
	"github.com/joeyrt/joey/internal/procutil"
	"github.com/joeyrt/joey/internal/testutil"
	jruntime "github.com/joeyrt/joey/runtime"
	_ "github.com/joeyrt/joey/runtime/virt"
	"github.com/joeyrt/joey/test/cnitest"
	"github.com/joeyrt/joey/test/containerdtest"
	"github.com/joeyrt/joey/test/nested"
)

// hypervisors are the ways the inner test runs containers on KVM.
// The configuration's runtime.hypervisor stays the default (qemu, with
// accel = "kvm" held); `joey run --hypervisor` picks the driver, and the
// runtime path reads it from the configuration.
var hypervisors = []struct{ name, driver string }{
	{"builtin", "builtin"},
	{"qemu-kvm", "qemu"},
}

func TestContainersRunEndToEndOnKVM(t *testing.T) {
	if os.Getenv(nested.InsideEnv) == "1" {
		inner(t)
		return
	}
	_, self, _, _ := runtime.Caller(0)
	joeyBin := filepath.Join(filepath.Dir(self), "../../../bin/joey")
	if _, err := os.Stat(joeyBin); err != nil {
		testutil.Unavailable(t, "bin/joey is missing: run `make build`")
	}
	shimBin := filepath.Join(filepath.Dir(joeyBin), "containerd-shim-joey-v2")
	if _, err := os.Stat(shimBin); err != nil {
		testutil.Unavailable(t, "bin/containerd-shim-joey-v2 is missing: run `make build`")
	}
	ctrdBin := os.Getenv(containerdtest.BinEnv)
	if ctrdBin == "" {
		testutil.Unavailable(t, containerdtest.BinEnv+" is not set: run scripts/containerd.sh DIR (make test does) and export "+containerdtest.BinEnv+"=DIR")
	}
	if !filepath.IsAbs(ctrdBin) {
		ctrdBin = filepath.Join(filepath.Dir(self), "../../..", ctrdBin)
	}
	for _, hv := range hypervisors {
		t.Run(hv.name, func(t *testing.T) {
			nested.RunInner(t, "github.com/joeyrt/joey/test/nested/builtinrun",
				"^TestContainersRunEndToEndOnKVM$/^"+hv.name+"$",
				nested.Options{Env: []string{"JOEY_TEST_IMAGE=" + testutil.GuestImage(t), "JOEY_BIN=" + joeyBin,
					containerdtest.BinEnv + "=" + ctrdBin}, Timeout: 360 * time.Second})
		})
	}
}

func inner(t *testing.T) {
	for _, hv := range hypervisors {
		t.Run(hv.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("/run", "jb")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			state := filepath.Join(dir, "state")
			cfgPath := filepath.Join(dir, "joey.toml")
			toml := fmt.Sprintf("[runtime]\nstate_dir = %q\n[image]\ndir = %q\n[agent]\ndial_timeout = \"60s\"\n"+
				"[hypervisor.qemu]\naccel = \"kvm\"\nmachine = \"microvm\"\n", state, os.Getenv("JOEY_TEST_IMAGE"))
			if err := os.WriteFile(cfgPath, []byte(toml), 0o644); err != nil {
				t.Fatal(err)
			}
			rootfs := filepath.Join(dir, "rootfs")
			if err := ociimage.BusyboxRootfs(rootfs); err != nil {
				t.Fatal(err)
			}
			t.Run("joey run passes stdio and exit status", func(t *testing.T) {
				stdout, stderr, code := joeyRun(t, "hi\n", "run", "--config", cfgPath, "--hypervisor", hv.driver, "--rootfs", rootfs,
					"sh", "-c", `echo out $(uname -r); read x; echo got $x; echo err >&2; exit 3`)
				if code != 3 || !strings.HasPrefix(stdout, "out ") || !strings.HasSuffix(stdout, "got hi\n") || !strings.Contains(stderr, "err\n") {
					t.Fatalf("exit %d, stdout %q, stderr %q; want 3, out/got hi, err", code, stdout, stderr)
				}
			})
			// SIGKILL of the container's init (from outside its pid
			// namespace: inside it, init ignores SIGKILL) as the shim's
			// Kill does it.
			t.Run("exec and SIGKILL through the runtime", func(t *testing.T) {
				execAndKill(t, cfgPath, hv.driver, rootfs)
			})
			// QEMU under containerd is the e2e package's (on TCG); the
			// built-in VMM only runs on KVM, so its containerd test is here.
			if hv.driver == "builtin" {
				t.Run("ctr run through containerd", func(t *testing.T) {
					ctrRun(t, dir, state)
				})
				t.Run("the agent over vsock", func(t *testing.T) {
					vsockCfg := filepath.Join(dir, "vsock.toml")
					toml, err := os.ReadFile(cfgPath)
					if err != nil {
						t.Fatal(err)
					}
					toml = append(toml, "[hypervisor.builtin]\nagent_channel = \"vsock\"\n"...)
					if err := os.WriteFile(vsockCfg, toml, 0o644); err != nil {
						t.Fatal(err)
					}
					stdout, stderr, code := joeyRun(t, "", "run", "--config", vsockCfg, "--hypervisor", "builtin", "--rootfs", rootfs,
						"sh", "-c", `grep -o 'joey.channel=[^ ]*' /proc/cmdline; exit 3`)
					if code != 3 || stdout != "joey.channel=vsock:1024\n" {
						t.Fatalf("exit %d, stdout %q, stderr %q; want 3 from a guest whose agent listens on vsock", code, stdout, stderr)
					}
				})
				// What `ctr run --cni` does, on a PCI bus without hotplug.
				t.Run("a network set up after create is hot-added", func(t *testing.T) {
					lateNetwork(t, cfgPath, rootfs)
				})
			}
			assertNothingLeft(t, state, dir)
		})
	}
}

// bootFailed says a sandbox could not start because its VM died or hung
// before the agent answered: under QEMU TCG's emulation of nested SVM
// about one L2 boot in eight does (see test/nested/linuxboot).
func bootFailed(msg string) bool {
	return strings.Contains(msg, "the VM ended before its agent answered") || strings.Contains(msg, "agent.dial_timeout")
}

// joeyRun runs joey, again (at most twice) when the VM failed to boot.
func joeyRun(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		stdout, stderr, code := joeyRunOnce(t, stdin, args...)
		if !bootFailed(stderr) {
			return stdout, stderr, code
		}
		if attempt == 3 {
			nested.ReportL2Death(stringer("three boots failed"))
			return stdout, stderr, code
		}
		t.Logf("attempt %d: the VM did not boot: %s", attempt, stderr)
	}
}

func joeyRunOnce(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	nested.CountL2Boot()
	cmd := exec.Command(os.Getenv("JOEY_BIN"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A joey that hangs is asked for a dump of its goroutines (SIGQUIT),
	// which says where.
	dump := time.AfterFunc(150*time.Second, func() { cmd.Process.Signal(syscall.SIGQUIT) })
	err := cmd.Wait()
	if !dump.Stop() {
		t.Fatalf("joey %q hung; its goroutines:\n%s", args, e.String())
	}
	t.Logf("joey %s took %v", args[len(args)-1], time.Since(start).Round(time.Millisecond))
	var ee *exec.ExitError
	switch {
	case err == nil:
		return o.String(), e.String(), 0
	case errors.As(err, &ee):
		return o.String(), e.String(), ee.ExitCode()
	}
	t.Fatalf("joey: %v", err)
	return "", "", 0
}

// execAndKill drives the runtime as the shim does: a long-running init, an
// exec whose output and exit status come back, then SIGKILL to the init.
func execAndKill(t *testing.T, cfgPath, driver, rootfs string) {
	cfg := loadConfig(t, cfgPath, driver)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	spec := containerSpec(rootfs, "sh", "-c", "echo ready; exec sleep 1000")
	sb := createSandbox(ctx, t, cfg, "kvm-exec", spec)
	// The spec asks for a network namespace of its own: the task's pid
	// (where `ctr run --cni` would configure CNI) must live there, not in
	// L1's — for the built-in VMM that is not this process.
	if driver == "builtin" && sb.Pid() == os.Getpid() {
		t.Errorf("the sandbox's pid is this process's, %d", sb.Pid())
	}
	assertOwnNetNS(t, sb.Pid())
	var initOut, execOut bytes.Buffer
	c, err := sb.CreateContainer(ctx, jruntime.ContainerConfig{ID: "kvm-exec", Spec: spec, IO: jruntime.IO{Stdout: &syncWriter{b: &initOut}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
	proc := *spec.Process
	proc.Args = []string{"sh", "-c", "echo exec sees $(cat /proc/1/cmdline | tr '\\0' ' '); exit 5"}
	if err := c.Exec(ctx, "e1", &proc, jruntime.IO{Stdout: &syncWriter{b: &execOut}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 5 {
		t.Fatalf("exec exit %d, want 5", st.Code)
	}
	if _, err := c.Delete(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(ctx, "", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	st, err = c.Wait(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 137 {
		t.Fatalf("init exit %d after SIGKILL, want 137", st.Code)
	}
	if _, err := c.Delete(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(execOut.String(), "exec sees sleep 1000") {
		t.Fatalf("exec output %q, want it to see the init's sleep", execOut.String())
	}
}

// ctrRun runs containers with `ctr run --runtime io.containerd.joey.v2` on a
// private containerd whose joey shim has runtime.hypervisor = "builtin":
// the whole VMM inside the shim's process, as users run it.
func ctrRun(t *testing.T, dir, state string) {
	// Sockets and the snapshotter's overlays must be on L1's own tmpfs,
	// not on the 9p shares TMPDIR points at.
	t.Setenv("TMPDIR", dir)
	cfgPath := filepath.Join(dir, "shim.toml")
	toml := fmt.Sprintf("[runtime]\nstate_dir = %q\nhypervisor = \"builtin\"\n[image]\ndir = %q\n[agent]\ndial_timeout = \"60s\"\n",
		state, os.Getenv("JOEY_TEST_IMAGE"))
	if err := os.WriteFile(cfgPath, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	d := containerdtest.Start(t, containerdtest.Options{
		ExtraPath: []string{filepath.Dir(os.Getenv("JOEY_BIN"))},
		Env:       []string{"JOEY_CONFIG=" + cfgPath},
		LogLevel:  "info",
	})
	ref := d.ImportBusybox(t)

	// ctr's exit status is the container's.
	var stdout, stderr string
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		nested.CountL2Boot()
		cmd := d.CtrCommand(ctx, "run", "--rm", "--runtime", "io.containerd.joey.v2", ref, fmt.Sprintf("builtin-%d", attempt),
			"sh", "-c", `echo in $(cat /proc/cpuinfo | grep -c ^processor) cpu; echo err >&2; exit 3`)
		var o, e testutil.SyncBuffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		cancel()
		stdout, stderr = o.String(), e.String()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 3 {
			break
		}
		if attempt == 3 || !bootFailed(stderr) {
			if attempt == 3 {
				nested.ReportL2Death(stringer("three boots failed"))
			}
			t.Fatalf("ctr run: %v, want exit status 3; stdout %q, stderr %q", err, stdout, stderr)
		}
		t.Logf("attempt %d: the VM did not boot: %s", attempt, stderr)
	}
	// ctr logs its own warnings (L1 has cgroup v1) to the same stderr.
	var containerErr []string
	for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if !strings.HasPrefix(l, "time=") {
			containerErr = append(containerErr, l)
		}
	}
	if stdout != "in 1 cpu\n" || strings.Join(containerErr, "\n") != "err" {
		t.Fatalf("stdout %q, stderr %q; want the container's", stdout, stderr)
	}

	// A long-running task: exec into it, then SIGKILL → 137.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	runDetached(ctx, t, d, ref, "long", "sleep", "1000")
	pid := taskPid(ctx, t, d, "long")
	if shim, err := d.ShimPid("long"); err != nil || shim == pid {
		t.Errorf("task pid %d is the shim's (%d, %v)", pid, shim, err)
	}
	assertOwnNetNS(t, pid)
	out, _, err := d.Ctr(ctx, "task", "exec", "--exec-id", "e1", "long", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
	if err != nil || out != "sleep 1000 " {
		t.Fatalf("ctr task exec: %q, %v; want the init's command line", out, err)
	}
	if _, _, err := d.Ctr(ctx, "task", "exec", "--exec-id", "e2", "long", "sh", "-c", "exit 5"); err == nil || !strings.Contains(err.Error(), "exit status 5") {
		t.Fatalf("ctr task exec of exit 5: %v", err)
	}
	if _, _, err := d.Ctr(ctx, "task", "kill", "-s", "SIGKILL", "long"); err != nil {
		t.Fatal(err)
	}
	for {
		ls, _, err := d.Ctr(ctx, "task", "ls")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(ls, "STOPPED") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, errOut, err := d.Ctr(ctx, "task", "rm", "long"); err != nil || !strings.Contains(errOut, "exit code 137") {
		t.Fatalf("ctr task rm after SIGKILL: %q, %v; want exit code 137", errOut, err)
	}
	if _, _, err := d.Ctr(ctx, "container", "rm", "long"); err != nil {
		t.Fatal(err)
	}

	// SIGKILL of the shim takes the VM with it (it ran in the shim); the
	// holder ends by itself (its stdin was the shim's), and containerd's
	// cleanup (the shim's delete command) with `ctr task rm -f` removes
	// the rest: state, mounts, the netns.
	runDetached(ctx, t, d, ref, "victim", "sleep", "1000")
	holder := taskPid(ctx, t, d, "victim")
	shim, err := d.ShimPid("victim")
	if err != nil || shim == 0 {
		t.Fatalf("no shim for victim: %v", err)
	}
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		what string
		pid  int
	}{{"the killed shim", shim}, {"the sandbox's netns holder", holder}} {
		deadline := time.Now().Add(15 * time.Second)
		for running(p.pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if running(p.pid) {
			t.Errorf("%s (pid %d) still runs", p.what, p.pid)
		}
	}
	if _, _, err := d.Ctr(ctx, "task", "rm", "-f", "victim"); err != nil && !strings.Contains(err.Error(), "not found") {
		t.Errorf("ctr task rm -f: %v", err)
	}
	if _, _, err := d.Ctr(ctx, "container", "rm", "victim"); err != nil {
		t.Fatal(err)
	}
	sbDir := filepath.Join(state, d.Namespace(), "victim")
	if _, err := os.Stat(sbDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed shim's sandbox state %s is still there (%v)", sbDir, err)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), sbDir) {
		t.Errorf("mounts left under %s", sbDir)
	}
}

// runDetached is `ctr run -d` of id, again (at most twice) when its VM
// failed to boot.
func runDetached(ctx context.Context, t *testing.T, d *containerdtest.Daemon, ref, id string, args ...string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		nested.CountL2Boot()
		_, errOut, err := d.Ctr(ctx, append([]string{"run", "-d", "--runtime", "io.containerd.joey.v2", ref, id}, args...)...)
		if err == nil {
			return
		}
		d.Ctr(ctx, "container", "rm", id)
		if attempt == 3 || !bootFailed(errOut) {
			t.Fatal(err)
		}
		t.Logf("attempt %d: the VM did not boot: %s", attempt, errOut)
	}
}

// taskPid is the PID column of `ctr task ls` for id.
func taskPid(ctx context.Context, t *testing.T, d *containerdtest.Daemon, id string) int {
	t.Helper()
	ls, _, err := d.Ctr(ctx, "task", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(ls, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == id {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("ctr task ls: %q", line)
			}
			return pid
		}
	}
	t.Fatalf("ctr task ls has no %s:\n%s", id, ls)
	return 0
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil && !procutil.Zombie(pid)
}

// assertOwnNetNS fails t unless process pid is in a network namespace
// other than L1's own.
func assertOwnNetNS(t *testing.T, pid int) {
	t.Helper()
	host, err := os.Readlink("/proc/1/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatalf("task pid %d: %v", pid, err)
	}
	if ns == host {
		t.Errorf("task pid %d is in L1's network namespace %s", pid, ns)
	}
}

// loadConfig loads the configuration at path with driver as
// runtime.hypervisor, and registers the drivers the runtime picks from.
func loadConfig(t *testing.T, path, driver string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Runtime.Hypervisor = driver
	if err := drivers.Register(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// createSandbox creates a sandbox through the runtime as the shim does,
// again (at most twice) when its VM failed to boot, and shuts it down
// when the test ends.
func createSandbox(ctx context.Context, t *testing.T, cfg *config.Config, id string, spec *specs.Spec) jruntime.Sandbox {
	t.Helper()
	h, err := jruntime.Get("virt")
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		nested.CountL2Boot()
		sb, err := h.CreateSandbox(ctx, jruntime.SandboxConfig{ID: id, Namespace: "test", Spec: spec, Config: cfg, Events: func(jruntime.Event) {}})
		if err == nil {
			t.Cleanup(func() {
				if err := sb.Shutdown(context.Background()); err != nil {
					t.Errorf("shutdown: %v", err)
				}
			})
			return sb
		}
		if attempt == 3 && bootFailed(err.Error()) {
			nested.ReportL2Death(stringer("three boots failed"))
		}
		if attempt == 3 || !bootFailed(err.Error()) {
			t.Fatal(err)
		}
		t.Logf("attempt %d: the VM did not boot: %v", attempt, err)
	}
}

// lateNetwork does what `ctr run --cni` does with the built-in VMM: the
// sandbox boots without a NIC, then a veth appears in the namespace of its
// task pid (the holder's), and the container's start hot-adds it on the
// PCI bus; the guest finds it by a rescan and a peer namespace the test
// made reaches the container's server through it.
func lateNetwork(t *testing.T, cfgPath, rootfs string) {
	cfg := loadConfig(t, cfgPath, "builtin")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	spec := containerSpec(rootfs, "nc", "-ll", "-p", "8080", "-e", "echo", "hello-from-hotplug")
	sb := createSandbox(ctx, t, cfg, "kvm-late", spec)
	c, err := sb.CreateContainer(ctx, jruntime.ContainerConfig{ID: "kvm-late", Spec: spec})
	if err != nil {
		t.Fatal(err)
	}

	peer := testutil.NewNetNS(t)
	taskNS, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", sb.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	defer taskNS.Close()
	peerNS, err := netns.GetFromPath(peer)
	if err != nil {
		t.Fatal(err)
	}
	defer peerNS.Close()
	hTask, err := netlink.NewHandleAt(taskNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer hTask.Close()
	hPeer, err := netlink.NewHandleAt(peerNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer hPeer.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "jlate-peer", PeerNamespace: netlink.NsFd(peerNS)}
	if err := hTask.LinkAdd(veth); err != nil {
		t.Fatalf("add veth pair: %v", err)
	}
	testutil.AddrUp(t, hTask, "eth0", "10.88.0.2/24")
	testutil.AddrUp(t, hPeer, "jlate-peer", "10.88.0.1/24")

	if err := c.Start(ctx, ""); err != nil {
		console, _ := os.ReadFile(filepath.Join(cfg.Runtime.StateDir, "test", "kvm-late", "console.log"))
		t.Fatalf("%v; the guest's console:\n%s", err, console)
	}
	var got string
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && got == "" {
		conn, err := cnitest.Dial(peer, "10.88.0.2:8080", 5*time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			b, _ := io.ReadAll(conn)
			conn.Close()
			got = strings.TrimSpace(string(b))
		}
		if got == "" {
			time.Sleep(500 * time.Millisecond)
		}
	}
	if got != "hello-from-hotplug" {
		t.Fatalf("peer -> container 10.88.0.2:8080 got %q", got)
	}
}

// syncWriter is a buffer the runtime's copy goroutines write to.
type syncWriter struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// assertNothingLeft checks that no sandbox state, mount or VMM process
// remains.
func assertNothingLeft(t *testing.T, state, dir string) {
	t.Helper()
	ents, _ := filepath.Glob(filepath.Join(state, "*", "*"))
	if len(ents) != 0 {
		t.Errorf("sandbox state left behind: %v", ents)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), state) {
		t.Errorf("mounts left under %s", state)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte("qemu-system")) || bytes.Contains(b, []byte(dir)) || bytes.Contains(b, []byte("joey-netns-holder")) {
			t.Errorf("process left behind: %s: %q", p, b)
		}
	}
}

// containerSpec is a runc-like spec for a busybox container (the test
// binary runs in L1 without cgo, so runc's specconv is out of reach).
func containerSpec(rootfs string, args ...string) *specs.Spec {
	caps := []string{"CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"}
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: "kvm",
		Root:     &specs.Root{Path: rootfs},
		Process: &specs.Process{
			Args:         args,
			Env:          []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/root"},
			Cwd:          "/",
			Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}, {Type: "network"}},
		},
	}
}

// stringer is a fixed description for nested.ReportL2Death.
type stringer string

func (s stringer) String() string { return string(s) }
