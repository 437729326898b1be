package virt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/joeyrt/joey/internal/procutil"
	"github.com/joeyrt/joey/persist/api"
)

// An in-process VMM (the built-in one) has the shim's pid, which lives in
// the host's network namespace and cannot move. containerd reports that
// pid as the task's, and `ctr run --cni` configures CNI in
// /proc/PID/ns/net between Create and Start: with the shim's pid it would
// configure the host's own namespace. So a sandbox in a namespace of its
// own, whose VMM has no process, gets a holder: a child born in that
// namespace that only waits, and whose pid is the task's.

// holderName is the holder's argv[0]: the runtime's binary re-executed
// (/proc/self/exe), recognised by the init below before main runs.
const holderName = "joey-netns-holder"

func init() {
	if len(os.Args) == 1 && os.Args[0] == holderName {
		hold()
	}
}

// hold waits for the end of stdin, a pipe whose writing end only the
// runtime holds: it ends when the sandbox is torn down or the runtime's
// process dies, so a holder never outlives its shim.
func hold() {
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// holder is a running holder process.
type holder struct {
	cmd    *exec.Cmd
	stdin  *os.File // closing it ends the holder
	exited chan struct{}
	rec    api.Process
}

// startHolder starts a holder in the network namespace at netns.
func startHolder(netns string) (*holder, error) {
	r, w, err := os.Pipe() // close-on-exec: no other child inherits w
	if err != nil {
		return nil, fmt.Errorf("netns holder: %w", err)
	}
	defer r.Close()
	h := &holder{
		cmd: &exec.Cmd{
			Path:  "/proc/self/exe",
			Args:  []string{holderName},
			Stdin: r,
			// Its own process group: a terminal's ^C to `joey run` is
			// for joey, which tears the sandbox down in order.
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		},
		stdin:  w,
		exited: make(chan struct{}),
	}
	if err := inNetNS(netns, h.cmd.Start); err != nil {
		w.Close()
		return nil, fmt.Errorf("netns holder: %w", err)
	}
	go func() {
		h.cmd.Wait()
		close(h.exited)
	}()
	pid := h.cmd.Process.Pid
	st, err := procutil.StartTime(pid)
	if err != nil {
		h.stop(context.Background())
		return nil, fmt.Errorf("netns holder: %w", err)
	}
	h.rec = api.Process{Name: holderName, Pid: pid, StartTime: st}
	return h, nil
}

// Pid is the holder's process id.
func (h *holder) Pid() int { return h.rec.Pid }

// stop ends the holder and reaps it.
func (h *holder) stop(ctx context.Context) error {
	h.stdin.Close()
	select {
	case <-h.exited:
		return nil
	case <-time.After(holderWait):
	case <-ctx.Done():
	}
	log.G(ctx).WithField("pid", h.rec.Pid).Warn("netns holder did not exit when its stdin closed; killing it")
	if err := h.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("netns holder: %w", err)
	}
	<-h.exited
	return nil
}

// holderWait is how long a holder has to notice its stdin closed.
const holderWait = 5 * time.Second
