package guestimage

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestShellRun(t *testing.T) {
	const script = "echo shell-$((6*7))"
	for _, tc := range []struct {
		name    string
		reply   string // what the fake shell writes once it has the script
		hangUp  bool   // the port closes after the reply
		vmEnded bool
		timeout time.Duration
		want    string
		rc      int
		err     error
	}{
		{name: "output up to the marker", reply: "joey-debug# shell-42\njoey-debug# JOEY-END-42 rc=0\njoey-debug# ",
			timeout: time.Minute, want: "joey-debug# shell-42\njoey-debug# JOEY-END-42 rc=0\n"},
		{name: "exit status", reply: "sh: nope: not found\nJOEY-END-42 rc=127\n",
			timeout: time.Minute, want: "sh: nope: not found\nJOEY-END-42 rc=127\n", rc: 127},
		{name: "silent shell", timeout: 50 * time.Millisecond, rc: -1, err: os.ErrDeadlineExceeded},
		{name: "port closed", reply: "shell-4", hangUp: true, timeout: time.Minute, want: "shell-4", rc: -1, err: io.EOF},
		{name: "VM ended", vmEnded: true, timeout: time.Minute, rc: -1, err: os.ErrDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, guest := net.Pipe()
			t.Cleanup(func() { host.Close(); guest.Close() })
			got, done := make(chan string, 1), make(chan struct{})
			go func() {
				var in strings.Builder
				r := bufio.NewReader(guest)
				for !strings.Contains(in.String(), "echo JOEY-END-") {
					line, err := r.ReadString('\n')
					in.WriteString(line)
					if err != nil {
						break
					}
				}
				got <- in.String()
				if tc.reply != "" {
					guest.Write([]byte(tc.reply))
				}
				if tc.hangUp {
					guest.Close()
				}
				if tc.vmEnded {
					close(done)
				}
			}()
			start := time.Now()
			out, rc, err := NewShell(host, done).Run(script, tc.timeout)
			if out != tc.want || rc != tc.rc || !errors.Is(err, tc.err) {
				t.Fatalf("Run = %q, %d, %v; want %q, %d, %v", out, rc, err, tc.want, tc.rc, tc.err)
			}
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Fatalf("Run took %v", elapsed)
			}
			if in := <-got; strings.Contains(in, "JOEY-END-42") || !strings.HasPrefix(in, script+"\n") {
				t.Fatalf("the shell was sent %q: the script, then a marker only the shell computes", in)
			}
		})
	}
}
