package stdio

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/fifo"
)

// loggerNamespace makes the test binary act as a logging binary: Open gives
// a logging binary only CONTAINER_ID and CONTAINER_NAMESPACE, so the
// namespace is how the re-executed test binary knows its role.
const loggerNamespace = "joey-stdio-test-logger"

func TestMain(m *testing.M) {
	if os.Getenv("CONTAINER_NAMESPACE") == loggerNamespace {
		os.Exit(runTestLogger(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runTestLogger is a logging binary: it copies fd 3 to DIR/stdout and fd 4
// to DIR/stderr and records its environment in DIR/env. Arguments come in
// "key value" pairs: dir DIR, ready close|byte|never.
func runTestLogger(args []string) int {
	opts := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		opts[args[i]] = args[i+1]
	}
	dir := opts["dir"]
	ready := os.NewFile(5, "ready")
	switch opts["ready"] {
	case "byte":
		ready.Write([]byte{1})
		ready.Close()
	case "close":
		ready.Close()
	case "never":
		return 0
	}
	os.WriteFile(filepath.Join(dir, "env"), []byte(strings.Join(os.Environ(), "\n")), 0o644)
	var wg sync.WaitGroup
	for fd, name := range map[uintptr]string{3: "stdout", 4: "stderr"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Create(filepath.Join(dir, name))
			if err != nil {
				return
			}
			defer f.Close()
			io.Copy(f, os.NewFile(fd, name))
		}()
	}
	wg.Wait()
	return 0
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// clientFifos makes the fifos and opens their far ends the way containerd's
// client (cio) does: readers of stdout and stderr, the writer of stdin.
func clientFifos(t *testing.T, ctx context.Context) (cfg Config, stdin io.WriteCloser, stdout, stderr io.ReadCloser) {
	t.Helper()
	dir := t.TempDir()
	cfg = Config{
		Stdin:  filepath.Join(dir, "stdin"),
		Stdout: filepath.Join(dir, "stdout"),
		Stderr: filepath.Join(dir, "stderr"),
	}
	open := func(path string, flag int) io.ReadWriteCloser {
		f, err := fifo.OpenFifo(ctx, path, flag|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	return cfg, open(cfg.Stdin, syscall.O_WRONLY), open(cfg.Stdout, syscall.O_RDONLY), open(cfg.Stderr, syscall.O_RDONLY)
}

func TestFifosKeepStreamsApartAndEndAtClose(t *testing.T) {
	ctx := testContext(t)
	cfg, stdin, stdout, stderr := clientFifos(t, ctx)
	p, err := Open(ctx, cfg, Owner{ContainerID: "c", Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Stdin == nil || p.Stdout == nil || p.Stderr == nil {
		t.Fatalf("streams missing: %+v", p)
	}

	if _, err := stdin.Write([]byte("typed\n")); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	got, err := io.ReadAll(p.Stdin)
	if err != nil || string(got) != "typed\n" {
		t.Errorf("stdin read %q, %v; want %q", got, err, "typed\n")
	}

	if _, err := io.WriteString(p.Stdout, "to stdout"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(p.Stderr, "to stderr"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		r    io.Reader
		want string
	}{{"stdout", stdout, "to stdout"}, {"stderr", stderr, "to stderr"}} {
		got, err := io.ReadAll(c.r)
		if err != nil || string(got) != c.want {
			t.Errorf("%s: read %q, %v; want %q then EOF", c.name, got, err, c.want)
		}
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestTerminalHasNoStderr(t *testing.T) {
	ctx := testContext(t)
	cfg, _, stdout, _ := clientFifos(t, ctx)
	cfg.Terminal = true
	p, err := Open(ctx, cfg, Owner{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Stderr != nil {
		t.Error("a terminal process got a stderr writer")
	}
	io.WriteString(p.Stdout, "tty output")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(stdout); string(got) != "tty output" {
		t.Errorf("stdout = %q", got)
	}
}

func TestNullConfigOpensNothing(t *testing.T) {
	var cfg Config
	if !cfg.IsNull() {
		t.Fatal("zero Config is not null")
	}
	p, err := Open(testContext(t), cfg, Owner{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Stdin != nil || p.Stdout != nil || p.Stderr != nil {
		t.Errorf("null config opened streams: %+v", p)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestClosingStdinEndsTheReaderAndIsIdempotent(t *testing.T) {
	ctx := testContext(t)
	cfg, _, _, _ := clientFifos(t, ctx)
	p, err := Open(ctx, cfg, Owner{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	read := make(chan error, 1)
	go func() {
		_, err := p.Stdin.Read(make([]byte, 1))
		read <- err
	}()
	if err := p.closeStdin(); err != nil {
		t.Fatal(err)
	}
	if err := p.closeStdin(); err != nil {
		t.Errorf("second closeStdin: %v", err)
	}
	select {
	case err := <-read:
		if err == nil {
			t.Error("read from closed stdin succeeded")
		}
	case <-ctx.Done():
		t.Fatal("a read of stdin still blocks after closeStdin")
	}
}

func TestFileURIAppendsBothStreams(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "new-dir", "ctr.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("earlier\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		path string
		pre  string
	}{
		{"existing file is appended to", path, "earlier\n"},
		{"missing directory is created", filepath.Join(dir, "a", "b", "log"), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			uri := "file://" + c.path
			p, err := Open(testContext(t), Config{Stdout: uri, Stderr: uri}, Owner{})
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(p.Stdout, "out\n")
			io.WriteString(p.Stderr, "err\n")
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(c.path)
			if want := c.pre + "out\nerr\n"; err != nil || string(got) != want {
				t.Errorf("log file = %q, %v; want %q", got, err, want)
			}
		})
	}
}

func TestBinaryURIFeedsTheLoggingBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		scheme, ready string
	}{
		{"binary", "close"},
		{"binary", "byte"},
		{"binary-v2", "byte"},
	} {
		t.Run(c.scheme+"/ready-by-"+c.ready, func(t *testing.T) {
			dir := t.TempDir()
			uri := fmt.Sprintf("%s://%s?dir=%s&ready=%s", c.scheme, self, url.QueryEscape(dir), c.ready)
			p, err := Open(testContext(t), Config{Stdout: uri, Stderr: uri},
				Owner{ContainerID: "c1", Namespace: loggerNamespace})
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(p.Stdout, "line on stdout\n")
			io.WriteString(p.Stderr, "line on stderr\n")
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			for name, want := range map[string]string{"stdout": "line on stdout\n", "stderr": "line on stderr\n"} {
				if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != want {
					t.Errorf("logger's %s = %q, %v; want %q", name, got, err, want)
				}
			}
			env, err := os.ReadFile(filepath.Join(dir, "env"))
			if err != nil {
				t.Fatal(err)
			}
			vars := strings.Split(string(env), "\n")
			want := []string{"CONTAINER_ID=c1", "CONTAINER_NAMESPACE=" + loggerNamespace}
			if strings.Join(vars, " ") != strings.Join(want, " ") {
				t.Errorf("logger environment = %q, want exactly %q", vars, want)
			}
		})
	}
}

func TestBinaryV2LoggerThatNeverSaysReadyFails(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	uri := fmt.Sprintf("binary-v2://%s?dir=%s&ready=never", self, url.QueryEscape(t.TempDir()))
	_, err = Open(testContext(t), Config{Stdout: uri}, Owner{Namespace: loggerNamespace})
	if err == nil || !strings.Contains(err.Error(), "ready") {
		t.Fatalf("Open = %v, want an error about the ready pipe", err)
	}
}

func TestBadTargetsFailNamingTheProblem(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, stdout, want string
	}{
		{"unknown scheme", "tcp://127.0.0.1:9/x", `unknown scheme "tcp"`},
		{"missing logging binary", "binary://" + filepath.Join(dir, "no-such-logger"), "no-such-logger"},
		{"binary without a path", "binary://", "names no binary"},
		{"relative file", "file:relative/log", "absolute"},
		{"missing fifo", filepath.Join(dir, "no-such-fifo"), "no-such-fifo"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(testContext(t), Config{Stdout: c.stdout}, Owner{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open(%q) = %v, want an error containing %q", c.stdout, err, c.want)
			}
		})
	}
}
