package qemu

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stderrLines is how much of QEMU's output is kept for error messages.
const stderrLines = 20

// process supervises one QEMU. Exactly one goroutine calls cmd.Wait; all
// others learn about the exit from the exited channel. (The shim runs with
// containerd's reaper disabled, so that Wait sees QEMU's real status.)
type process struct {
	cmd    *exec.Cmd
	output *tail
	exited chan struct{} // closed after err is set
	err    error         // cmd.Wait's result
}

// startProcess runs QEMU in its own process group, so that a kill reaches
// anything it may have started, with files as fd 3, 4, …. QEMU never
// daemonizes: it stays our child, and its exit is ours to see.
func startProcess(binary string, args []string, files []*os.File) (*process, error) {
	p := &process{output: &tail{max: stderrLines}, exited: make(chan struct{})}
	cmd := exec.Command(binary, args...)
	cmd.ExtraFiles = files
	cmd.Stdout = p.output
	cmd.Stderr = p.output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A descendant that kept the output pipe must not hold up Wait.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", binary, err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to QEMU's process group unless QEMU has been reaped
// already (its pid, and so the group id, may then belong to someone else).
func (p *process) kill() {
	if p.hasExited() {
		return
	}
	syscall.Kill(-p.pid(), syscall.SIGKILL)
}

// killAndWait kills QEMU and waits for its exit for at most limit.
func (p *process) killAndWait(limit time.Duration) error {
	p.kill()
	select {
	case <-p.exited:
		return nil
	case <-time.After(limit):
		return fmt.Errorf("qemu (pid %d) still running %v after SIGKILL", p.pid(), limit)
	}
}

// exitErr describes how QEMU ended. Call it only after exited is closed.
func (p *process) exitErr() error {
	if p.err == nil {
		return nil
	}
	if out := p.output.String(); out != "" {
		return fmt.Errorf("qemu %w; its last output:\n%s", p.err, out)
	}
	return fmt.Errorf("qemu %w", p.err)
}

// tail is an io.Writer that keeps the last max lines written to it.
type tail struct {
	max int

	mu      sync.Mutex
	lines   []string // guarded by mu
	partial []byte   // guarded by mu; the unterminated last line
}

// maxLine bounds a line without a newline.
const maxLine = 4096

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.partial = append(t.partial, b...)
			if len(t.partial) > maxLine {
				t.partial = t.partial[len(t.partial)-maxLine:]
			}
			break
		}
		t.lines = append(t.lines, string(append(t.partial, b[:i]...)))
		t.partial = t.partial[:0]
		if len(t.lines) > t.max {
			t.lines = t.lines[len(t.lines)-t.max:]
		}
		b = b[i+1:]
	}
	return n, nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(t.partial))
	}
	return strings.Join(lines, "\n")
}
