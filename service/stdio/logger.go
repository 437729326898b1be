package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"

	"github.com/containerd/log"
)

// loggerExitTimeout is how long a logging binary may take to flush and exit
// after its pipes reached EOF before it is killed.
const loggerExitTimeout = 10 * time.Second

// logger is a running logging binary.
type logger struct {
	cmd  *exec.Cmd
	path string
	// exited is closed once cmd.Wait has returned; err is its result.
	exited chan struct{}
	err    error
}

// startLogger runs the binary named by a binary:// URI with containerd's
// logging protocol: fd 3 carries stdout, fd 4 stderr, and fd 5 is a pipe the
// binary closes (binary://) or writes a byte to (binary-v2://) once it is
// ready. The URI's query becomes its arguments, "key value" per pair.
func (p *Pipes) startLogger(ctx context.Context, u *url.URL, terminal bool, owner Owner) (retErr error) {
	if u.Path == "" {
		return fmt.Errorf("log URI %q names no binary: want binary:///path/to/logger", u.String())
	}
	var files []*os.File // our copies of the child's ends, closed once it has them
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err != nil {
			return nil, nil, fmt.Errorf("logging binary %s: %w", u.Path, err)
		}
		return r, w, nil
	}
	outR, outW, err := pipe()
	if err != nil {
		return err
	}
	files = append(files, outR)
	p.outputs = append(p.outputs, outW)
	p.Stdout = outW

	// With a terminal there is no stderr, but the protocol still hands the
	// binary fd 4; it just sees EOF.
	errR, errW, err := pipe()
	if err != nil {
		return err
	}
	files = append(files, errR)
	p.outputs = append(p.outputs, errW)
	if !terminal {
		p.Stderr = errW
	}

	readyR, readyW, err := pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	files = append(files, readyW)

	cmd := exec.Command(u.Path, queryArgs(u)...)
	cmd.Env = []string{
		"CONTAINER_ID=" + owner.ContainerID,
		"CONTAINER_NAMESPACE=" + owner.Namespace,
	}
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start logging binary %s: %w", u.Path, err)
	}
	l := &logger{cmd: cmd, path: u.Path, exited: make(chan struct{})}
	go func() {
		l.err = cmd.Wait()
		close(l.exited)
	}()
	p.logger = l
	defer func() {
		// A binary that failed to get ready is not waited for politely.
		if retErr != nil {
			cmd.Process.Kill()
		}
	}()
	// Our copy of the ready pipe's write end must go, or we would never
	// see the binary close its own.
	readyW.Close()
	files = files[:len(files)-1]

	ready := make(chan error, 1)
	go func() {
		var b [1]byte
		n, err := readyR.Read(b[:])
		switch {
		case n == 1:
			ready <- nil
		case errors.Is(err, io.EOF) && u.Scheme == "binary":
			ready <- nil
		case errors.Is(err, io.EOF):
			ready <- fmt.Errorf("logging binary %s closed its ready pipe without writing a byte, as binary-v2:// requires (did it crash?)", u.Path)
		default:
			ready <- fmt.Errorf("logging binary %s: read ready pipe: %w", u.Path, err)
		}
	}()
	select {
	case err := <-ready:
		return err
	case <-ctx.Done():
		return fmt.Errorf("logging binary %s did not say it was ready: %w", u.Path, ctx.Err())
	}
}

// queryArgs turns the URI's query into arguments. Keys are sorted so the
// command line does not depend on map order.
func queryArgs(u *url.URL) []string {
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var args []string
	for _, k := range keys {
		args = append(args, k)
		if v := q[k]; len(v) > 0 && v[0] != "" {
			args = append(args, v[0])
		}
	}
	return args
}

// wait waits for the binary to exit after its pipes were closed, killing it
// when it takes longer than loggerExitTimeout. An exit status other than 0 is
// reported: the binary may have lost output.
func (l *logger) wait() error {
	select {
	case <-l.exited:
	case <-time.After(loggerExitTimeout):
		log.L.WithField("binary", l.path).Warnf("logging binary did not exit %v after EOF, killing it", loggerExitTimeout)
		if err := l.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("kill logging binary %s: %w", l.path, err)
		}
		<-l.exited
		return fmt.Errorf("logging binary %s did not exit after EOF and was killed", l.path)
	}
	if l.err != nil {
		return fmt.Errorf("logging binary %s: %w", l.path, l.err)
	}
	return nil
}
