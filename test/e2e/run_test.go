package e2e

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"

	"github.com/joeyrt/joey/internal/testutil"
)

func TestExitCodeAndStreamsAreKeptApart(t *testing.T) {
	e := newEnv(t)
	out, errOut, code := e.run(t, "streams", nil, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
	if code != 3 {
		t.Errorf("ctr run exited %d, want the container's 3 (stderr: %s)", code, errOut)
	}
	if strings.TrimSpace(out) != "to-stdout" {
		t.Errorf("stdout = %q, want only the container's stdout", out)
	}
	if !strings.Contains(errOut, "to-stderr") || strings.Contains(errOut, "to-stdout") {
		t.Errorf("stderr = %q, want the container's stderr alone", errOut)
	}
}

func TestStdinReachesTheContainer(t *testing.T) {
	e := newEnv(t)
	out, errOut, code := e.runStdin(t, strings.NewReader("hello from the host\n"), "stdin", nil,
		"sh", "-c", "read x; echo got $x")
	if code != 0 || strings.TrimSpace(out) != "got hello from the host" {
		t.Errorf("stdin: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestProcessUserCwdAndEnv(t *testing.T) {
	e := newEnv(t)
	out, errOut, code := e.run(t, "proc", []string{"--user", "1000", "--cwd", "/tmp", "--env", "A=b"},
		"sh", "-c", "id -u; id -g; pwd; echo A=$A")
	want := "1000\n1000\n/tmp\nA=b"
	if code != 0 || strings.TrimSpace(out) != want {
		t.Errorf("exit %d, stdout %q (want %q), stderr %q", code, out, want, errOut)
	}
}

func TestReadOnlyRootfsAndBindMounts(t *testing.T) {
	e := newEnv(t)
	rw, ro := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "existing"), []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	flags := []string{
		"--read-only",
		"--mount", "type=bind,src=" + rw + ",dst=/rw,options=rbind:rw",
		"--mount", "type=bind,src=" + ro + ",dst=/ro,options=rbind:ro",
	}
	script := `touch /in-rootfs 2>/dev/null && echo rootfs-writable || echo rootfs-ro
echo written-in-guest > /rw/new
cat /ro/existing
touch /ro/x 2>/dev/null && echo ro-writable || echo ro-refused`
	out, errOut, code := e.run(t, "mounts", flags, "sh", "-c", script)
	want := "rootfs-ro\nfrom-host\nro-refused"
	if code != 0 || strings.TrimSpace(out) != want {
		t.Errorf("exit %d, stdout %q (want %q), stderr %q", code, out, want, errOut)
	}
	if data, err := os.ReadFile(filepath.Join(rw, "new")); err != nil || string(data) != "written-in-guest\n" {
		t.Errorf("write through the rw mount: host sees %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(ro, "x")); !os.IsNotExist(err) {
		t.Errorf("a file appeared in the read-only mount's source: %v", err)
	}
}

func TestTerminal(t *testing.T) {
	e := newEnv(t)
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := master.Resize(console.WinSize{Height: 30, Width: 100}); err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// ctr resizes the container's terminal after it started: wait for it.
	script := `[ -t 0 ] && [ -t 1 ] && echo is-a-tty
for i in $(seq 100); do s=$(stty size); [ "$s" != "0 0" ] && break; sleep 0.1; done
echo size=$s`
	testutil.CountVM(t)
	cmd := e.d.CtrCommand(testContext(t, 3*time.Minute), "run", "--rm", "-t", "--runtime", runtimeName, e.ref, "tty", "sh", "-c", script)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		// Ends with EIO once ctr, the last holder of the slave, exits.
		io.Copy(&out, master)
		close(copied)
	}()
	err = cmd.Wait()
	select {
	case <-copied:
	case <-time.After(10 * time.Second):
	}
	text := strings.ReplaceAll(out.String(), "\r", "")
	if err != nil || !strings.Contains(text, "is-a-tty\n") || !strings.Contains(text, "size=30 100\n") {
		t.Errorf("ctr run -t: %v; terminal showed %q", err, text)
	}
}
