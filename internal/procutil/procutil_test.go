package procutil

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMatchesSelfOnlyWithItsStartTime(t *testing.T) {
	self := os.Getpid()
	st, err := StartTime(self)
	if err != nil {
		t.Fatal(err)
	}
	if st == 0 {
		t.Fatal("start time of this process is 0")
	}
	tests := []struct {
		name  string
		pid   int
		start uint64
		want  bool
	}{
		{"self with its start time", self, st, true},
		{"self with a later start time", self, st + 1, false},
		{"self with an earlier start time", self, st - 1, false},
		{"start time never recorded", self, 0, false},
		{"pid 0 would signal the process group", 0, st, false},
		{"pid -1 would signal every process", -1, st, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Matches(tt.pid, tt.start); got != tt.want {
				t.Errorf("Matches(%d, %d) = %v, want %v", tt.pid, tt.start, got, tt.want)
			}
		})
	}
}

func TestMatchesIsFalseOnceTheProcessIsGone(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	st, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !Matches(pid, st) {
		t.Fatal("Matches is false for a running child")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: the error only reports the signal
	if Matches(pid, st) {
		t.Errorf("Matches(%d, %d) is true after the child was reaped", pid, st)
	}
}

func TestParseStartTime(t *testing.T) {
	// Fields 3..21 are filler; field 22 is the start time.
	tail := " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20 21"
	tests := []struct {
		name, stat string
		want       uint64
		wantErr    string
	}{
		{"plain name", "123 (qemu)" + tail, 4242, ""},
		{"name with spaces and parens", "123 (a) b (c) d)" + tail, 4242, ""},
		{"truncated", "123 (qemu) S 1 2", 0, "fields after the command name"},
		{"no command name", "123 qemu S", 0, "no ')'"},
		{"not a number", "123 (qemu)" + strings.Replace(tail, "4242", "x", 1), 0, "start time \"x\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStartTime([]byte(tt.stat))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %d, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestStartTimeOfMissingProcessFails(t *testing.T) {
	if _, err := StartTime(0); err == nil {
		t.Error("StartTime(0) did not fail")
	}
	// pid_max is at most 2^22, so this pid cannot exist.
	if _, err := StartTime(1 << 23); err == nil {
		t.Error("StartTime of a pid above pid_max did not fail")
	}
}
