package container

import (
	"context"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestTerminalCarriesOutputAndResizes(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := uniqueID(t)
	spec := testSpec(t, "sh", "-c", "stty size; echo to-stderr >&2; read x; stty size; tty")
	spec.Process.Terminal = true
	spec.Process.ConsoleSize = &specs.Box{Height: 24, Width: 80}
	if err := m.Create(ctx, id, spec, true); err != nil {
		t.Fatal(err)
	}
	pio, err := m.Stdio(id, "")
	if err != nil {
		t.Fatal(err)
	}
	if pio.Stderr != nil {
		t.Fatal("a terminal process has a separate stderr")
	}
	out := newStreamReader(pio.Stdout)
	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	// Stderr comes through the same pty.
	out.until(t, "24 80\r\nto-stderr\r\n")
	if err := m.Resize(ctx, id, "", 40, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := pio.Stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	got := out.until(t, "/dev/pts/")
	if !strings.Contains(got, "40 100\r\n") {
		t.Fatalf("output after the resize = %q, want the new size 40 100", got)
	}
	if st := waitExit(t, m, id, ""); st.Code != 0 {
		t.Fatalf("exit code = %d", st.Code)
	}
	// Closing stdin of a terminal ends input only.
	if err := pio.Stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pio.Stdin.Write([]byte("x")); err == nil {
		t.Fatal("write after closing terminal input succeeded")
	}
}

func TestExecWithTerminalAndResizeWithout(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := startSleeper(t, m)
	mustErr(t, m.Resize(ctx, id, "", 10, 10), ErrInvalidState, "no terminal")
	p := execProcess("sh", "-c", "tty; stty size")
	p.Terminal = true
	p.ConsoleSize = &specs.Box{Height: 30, Width: 90}
	if err := m.Exec(ctx, id, "t1", p, true); err != nil {
		t.Fatal(err)
	}
	pio, _ := m.Stdio(id, "t1")
	out := newStreamReader(pio.Stdout)
	got := out.until(t, "30 90\r\n")
	if !strings.HasPrefix(got, "/dev/pts/") {
		t.Fatalf("exec output = %q, want its tty first", got)
	}
	if st := waitExit(t, m, id, "t1"); st.Code != 0 {
		t.Fatalf("exit code = %d", st.Code)
	}
	// The output ends cleanly (EOF, not EIO) once the exec is gone.
	if rest, err := readWithin(pio.Stdout, 10e9); err != nil {
		t.Fatalf("reading the rest: %q, %v", rest, err)
	}
}
