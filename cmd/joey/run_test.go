package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"

	"github.com/joeyrt/joey/internal/ociimage"
	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/persist/api"
)

// joeyBinary builds this command once per test run: `joey run` is about
// stdio and exit status, which only a real process shows.
func joeyBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(os.TempDir(), fmt.Sprintf("joey-test-%d", os.Getpid()))
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build joey: %v\n%s", err, out)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	os.Remove(filepath.Join(os.TempDir(), fmt.Sprintf("joey-test-%d", os.Getpid())))
	os.Exit(code)
}

// runEnv writes a config whose state lives in a temp dir and whose image is
// the test image (when one is needed).
func runEnv(t *testing.T, image string) (configPath, stateDir string) {
	t.Helper()
	dir := t.TempDir()
	// The VM's sockets live under the state dir, and unix socket paths are
	// short: keep it near the root rather than under t.TempDir().
	stateDir, err := os.MkdirTemp("/tmp", "jr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	cfg := fmt.Sprintf("[runtime]\nstate_dir = %q\n", stateDir)
	if image != "" {
		cfg += fmt.Sprintf("[image]\ndir = %q\n", image)
	}
	configPath = filepath.Join(dir, "joey.toml")
	if err := os.WriteFile(configPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return configPath, stateDir
}

func joey(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(joeyBinary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	return testutil.Run(t, cmd)
}

// assertNoSandboxes checks that nothing of a sandbox is left in stateDir.
func assertNoSandboxes(t *testing.T, stateDir string) {
	t.Helper()
	ents, _ := filepath.Glob(filepath.Join(stateDir, "*", "*"))
	if len(ents) != 0 {
		t.Fatalf("sandbox state left behind: %v", ents)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), stateDir) {
		t.Fatalf("mounts left under %s", stateDir)
	}
}

func TestRunRejectsBadInputNamingTheFlag(t *testing.T) {
	rootfs := t.TempDir()
	cfg, state := runEnv(t, "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--bundle"},
		{[]string{"--rootfs", rootfs}, "needs a command"},
		{[]string{"--rootfs", rootfs, "--bundle", rootfs, "true"}, "exclude each other"},
		{[]string{"--rootfs", filepath.Join(rootfs, "absent"), "true"}, "--rootfs"},
		{[]string{"--rootfs", rootfs, "--user", "joey", "true"}, "--user"},
		{[]string{"--bundle", rootfs}, "config.json"},
		{[]string{"--rootfs", rootfs, "--id", "../x", "true"}, "--id"},
		{[]string{"--rootfs", rootfs, "--hypervisor", "nope", "true"}, "hypervisor"},
	} {
		_, stderr, code := joey(t, "", append([]string{"run", "--config", cfg}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("joey run %q: exit %d, stderr %q; want failure mentioning %q", tc.args, code, stderr, tc.want)
		}
	}
	assertNoSandboxes(t, state)
}

func TestRunPassesStdioAndExitStatusThrough(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireQEMU(t)
	cfg, state := runEnv(t, testutil.GuestImage(t))
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := ociimage.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	testutil.CountVM(t)
	stdout, stderr, code := joey(t, "hi\n", "run", "--config", cfg, "--rootfs", rootfs, "--user", "1000",
		"--env", "GREETING=hello", "--cwd", "/tmp",
		"sh", "-c", `echo out $GREETING $(id -u) $(pwd); echo err >&2; read x; echo got $x; exit 3`)
	if code != 3 {
		t.Errorf("exit status %d, want 3 (stderr %q)", code, stderr)
	}
	if stdout != "out hello 1000 /tmp\ngot hi\n" {
		t.Errorf("stdout %q", stdout)
	}
	if !strings.Contains(stderr, "err\n") {
		t.Errorf("stderr %q lacks the container's err", stderr)
	}
	assertNoSandboxes(t, state)
}

func TestPsAndInspectShowARunningSandboxAndSignalsAreForwarded(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireQEMU(t)
	cfg, state := runEnv(t, testutil.GuestImage(t))
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := ociimage.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	testutil.CountVM(t)
	cmd := exec.Command(joeyBinary(t), "run", "--config", cfg, "--id", "probe", "--rootfs", rootfs,
		"sh", "-c", `trap "exit 7" TERM; echo ready; while :; do sleep 1; done`)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	for !strings.Contains(out.String(), "ready") {
		select {
		case err := <-done:
			t.Fatalf("joey run ended (%v) before the container was ready: %s", err, out.String())
		case <-deadline:
			t.Fatalf("container never became ready: %s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	ps, stderr, code := joey(t, "", "ps", "--config", cfg)
	if code != 0 || !strings.Contains(ps, "probe") || !strings.Contains(ps, "running") || !strings.Contains(ps, runNamespace) {
		t.Fatalf("joey ps: exit %d\n%s%s", code, ps, stderr)
	}
	js, stderr, code := joey(t, "", "inspect", "--config", cfg, "probe")
	if code != 0 {
		t.Fatalf("joey inspect: exit %d: %s", code, stderr)
	}
	var st api.SandboxState
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("inspect output is not sandbox state: %v\n%s", err, js)
	}
	if st.ID != "probe" || st.VMM.Pid == 0 || len(st.Containers) != 1 {
		t.Fatalf("inspect = %+v", st)
	}
	if _, _, code := joey(t, "", "inspect", "--config", cfg, "absent"); code == 0 {
		t.Fatal("inspect of an unknown sandbox succeeded")
	}

	cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Fatalf("joey run ended with %v, want exit status 7 from the trapped SIGTERM\n%s", err, out.String())
		}
	case <-ctx.Done():
		t.Fatal("joey run did not end after SIGTERM")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", st.VMM.Pid)); err == nil {
		t.Errorf("VMM pid %d still exists", st.VMM.Pid)
	}
	assertNoSandboxes(t, state)
}

func TestRunBundleTakesCommandAndRootfsFromConfigJSON(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireQEMU(t)
	cfg, state := runEnv(t, testutil.GuestImage(t))
	bundle := t.TempDir()
	if err := ociimage.BusyboxRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		t.Fatal(err)
	}
	spec := specconv.Example()
	spec.Root.Path = "rootfs" // relative to the bundle, as runc reads it
	spec.Process.Terminal = false
	spec.Process.Args = []string{"sh", "-c", "echo bundle $(hostname); exit 4"}
	spec.Hostname = "from-bundle"
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.CountVM(t)
	stdout, stderr, code := joey(t, "", "run", "--config", cfg, "--bundle", bundle)
	if code != 4 || stdout != "bundle from-bundle\n" {
		t.Fatalf("joey run --bundle: exit %d, stdout %q, stderr %q; want 4 and \"bundle from-bundle\"", code, stdout, stderr)
	}
	assertNoSandboxes(t, state)
}
