// Package guestimage gives tests the guest images they boot beyond the one
// `make test` builds: the debug-console variant, built next to it from the
// same kernel package and agent and reused through the builder's cache, and
// a driver for that variant's shell.
package guestimage

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/joeyrt/joey/image"
	"github.com/joeyrt/joey/internal/testutil"
)

// Debug returns the directory of the image built with --debug-console (a
// busybox shell on the console.1 port).
func Debug(t testing.TB) string {
	t.Helper()
	base := testutil.GuestImage(t)
	deb := os.Getenv("JOEY_KERNEL_DEB")
	if deb == "" {
		testutil.Unavailable(t, "JOEY_KERNEL_DEB is not set: run `make test`")
	}
	_, self, _, _ := runtime.Caller(0)
	agent := filepath.Join(filepath.Dir(self), "../../bin/joey-agent")
	if _, err := os.Stat(agent); err != nil {
		testutil.Unavailable(t, "bin/joey-agent is missing: run `make build`")
	}
	out := filepath.Clean(base) + "-debug"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := image.Build(ctx, image.Options{KernelPackage: deb, Agent: agent, Out: out, DebugConsole: true}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Shell drives the debug image's shell over its console port. One reader
// serves every Run, so nothing it buffered past one end marker is lost to
// the next.
type Shell struct {
	conn net.Conn
	r    *bufio.Reader
	done <-chan struct{}
}

// NewShell drives the shell on conn. When done closes (the VM ended), a
// pending Run gives up at once: a dead VM leaves the port open but silent.
// A nil done never closes.
func NewShell(conn net.Conn, done <-chan struct{}) *Shell {
	return &Shell{conn: conn, r: bufio.NewReader(conn), done: done}
}

var endRE = regexp.MustCompile(`JOEY-END-42 rc=(\d+)`)

// Run runs script and returns the shell's output up to and including the
// end marker's line, and the exit status of the script's last command. It
// gives up after timeout, or when done closes, with what it read so far.
func (s *Shell) Run(script string, timeout time.Duration) (string, int, error) {
	s.conn.SetDeadline(time.Now().Add(timeout))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-s.done:
			s.conn.SetDeadline(time.Now())
		case <-stop:
		}
	}()
	// The marker is computed by the shell, so neither the script's text
	// nor its echo by the terminal can match it. On a line of its own it
	// still runs after a syntax error in the script.
	if _, err := fmt.Fprintf(s.conn, "%s\necho JOEY-END-$((40+2)) rc=$?\n", script); err != nil {
		return "", -1, fmt.Errorf("write to the debug shell: %w", err)
	}
	var out strings.Builder
	for {
		line, err := s.r.ReadString('\n')
		out.WriteString(line)
		if m := endRE.FindStringSubmatch(line); m != nil {
			rc, _ := strconv.Atoi(m[1])
			return out.String(), rc, nil
		}
		if err != nil {
			return out.String(), -1, fmt.Errorf("debug shell gave no end marker: %w", err)
		}
	}
}

// StripPrompt drops the shell's prompts and the end marker from Run's
// output.
func StripPrompt(out string) string {
	out = strings.ReplaceAll(out, "joey-debug# ", "")
	return endRE.ReplaceAllString(out, "")
}
