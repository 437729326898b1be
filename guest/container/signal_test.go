package container

import (
	"context"
	"syscall"
	"testing"
)

func TestSignalsEndTheInit(t *testing.T) {
	requireContainers(t)
	for _, tc := range []struct {
		name   string
		script string
		sig    syscall.Signal
		all    bool
		out    string
		code   int
	}{
		{"SIGKILL gives 137", "echo ready; exec sleep 1000", syscall.SIGKILL, false, "ready\n", 137},
		{"SIGTERM reaches a handler", `trap "echo term; exit 7" TERM; echo ready; while true; do sleep 0.05; done`, syscall.SIGTERM, false, "ready\nterm\n", 7},
		// The init survives (it traps TERM); its child only ends if "all"
		// signalled it too, and only then does the second wait return. The
		// child is "ready" once it runs sleep: before that it is a copy of
		// the shell, trap included.
		{"all reaches processes beyond the init", `trap "echo trapped" TERM; sleep 1000 & until [ "$(head -c 5 /proc/$!/cmdline)" = sleep ]; do :; done; echo ready; wait; wait; echo done; exit 4`, syscall.SIGTERM, true, "ready\ntrapped\ndone\n", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestManager(t, Options{})
			ctx := context.Background()
			id := uniqueID(t)
			if err := m.Create(ctx, id, testSpec(t, "sh", "-c", tc.script), false); err != nil {
				t.Fatal(err)
			}
			pio, _ := m.Stdio(id, "")
			if err := m.Start(ctx, id); err != nil {
				t.Fatal(err)
			}
			out := newStreamReader(pio.Stdout)
			out.until(t, "ready\n")
			if err := m.Signal(ctx, id, "", tc.sig, tc.all); err != nil {
				t.Fatal(err)
			}
			if st := waitExit(t, m, id, ""); st.Code != tc.code {
				t.Fatalf("exit code = %d, want %d", st.Code, tc.code)
			}
			if got := out.until(t, tc.out); got != tc.out {
				t.Fatalf("stdout = %q, want %q", got, tc.out)
			}
			mustErr(t, m.Signal(ctx, id, "", tc.sig, false), ErrNotFound, "exited")
		})
	}
}

func TestSignalToAPausedContainerKillsIt(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := startSleeper(t, m)
	if err := m.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := m.Signal(ctx, id, "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, m, id, ""); st.Code != 137 {
		t.Fatalf("exit code = %d, want 137", st.Code)
	}
}

func TestSignalRejectsBadInput(t *testing.T) {
	m, err := NewManager(t.TempDir(), testReaper, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustErr(t, m.Signal(context.Background(), "c", "", 0, false), ErrInvalid, "signal 0")
	mustErr(t, m.Signal(context.Background(), "c", "", 65, false), ErrInvalid, "signal 65")
	mustErr(t, m.Signal(context.Background(), "nosuch", "", 9, false), ErrNotFound, "nosuch")
}
