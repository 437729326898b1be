// Package containerdtest runs a private containerd 2.x for end-to-end tests:
// its own root, state, socket and config, so tests never touch (or depend on)
// a containerd the host may run, and several daemons can run side by side.
//
// The binaries come from scripts/containerd.sh (containerd, ctr and
// containerd-shim-runc-v2 of containerd 2.4.2); `make test` exports their
// directory as JOEY_CONTAINERD_BIN. Tests drive the daemon with ctr, the way a
// user would, and import a locally built busybox image (internal/ociimage).
package containerdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/joeyrt/joey/internal/testutil"
)

// BinEnv names the directory holding containerd, ctr and
// containerd-shim-runc-v2 when Options.BinDir is empty.
const BinEnv = "JOEY_CONTAINERD_BIN"

// Options configure a private daemon. The zero value is a usable default.
type Options struct {
	// BinDir holds containerd, ctr and containerd-shim-runc-v2. Default: the
	// directory named by JOEY_CONTAINERD_BIN (relative to the repository's
	// root when relative).
	BinDir string
	// ExtraPath are directories put first on containerd's PATH, where it looks
	// for shims: the repository's bin/ for containerd-shim-joey-v2.
	ExtraPath []string
	// Namespace is the containerd namespace tests use. Default: a name unique
	// to this daemon, since runc's state (/run/containerd/runc/<ns>), cgroups
	// and joey's own state are keyed by namespace and container id, which
	// would collide between daemons running at the same time. A name given
	// here must be as private: teardown removes the namespace's cgroups and
	// runc state directory.
	Namespace string
	// Snapshotter forces a snapshotter. Default: overlayfs when an overlay
	// mount works on the filesystem of the daemon's root, else native.
	Snapshotter string
	// LogLevel is containerd's log level. Default: debug; the log is only
	// shown when the test fails.
	LogLevel string
	// Env are extra environment variables for containerd, in the form
	// KEY=value. Shims inherit containerd's environment, so this is how a
	// test points joey's shim at a configuration file (JOEY_CONFIG).
	Env []string
	// ExtraConfig is TOML appended to the generated config. It must not
	// repeat a table the harness writes ([grpc], [debug], the
	// transfer plugin's unpack_config).
	ExtraConfig string
	// StartTimeout bounds how long Start waits for the daemon to answer.
	// Default: 30 s.
	StartTimeout time.Duration
}

// Daemon is a running private containerd. Its methods may be called from
// several goroutines.
type Daemon struct {
	binDir      string
	root, state string
	address     string
	namespace   string
	snapshotter string
	logPath     string

	cmd     *exec.Cmd
	done    chan struct{} // closed when the containerd process has exited
	waitErr error         // containerd's exit; read only after done is closed
	ready   bool          // containerd answered; set by Start before it returns

	importMu  sync.Mutex
	importRef string // guarded by importMu; set once the image is imported
	importErr error  // guarded by importMu
}

var daemonCount atomic.Int64

// Start starts a private containerd for t and registers its teardown with
// t.Cleanup: tasks and containers the test left are deleted, the daemon is
// stopped (SIGTERM, then SIGKILL), and mounts left under its directories are
// unmounted. Shim processes or mounts that outlive their tasks fail a test
// that has not failed otherwise: they are leaks of the shim under test.
//
// Start needs root; without it, or without the binaries, the test is skipped
// (failed under JOEY_REQUIRE_ALL=1).
func Start(t testing.TB, opts Options) *Daemon {
	t.Helper()
	testutil.RequireRoot(t)
	binDir := binDirFor(t, opts)
	extraPath, err := absPaths(opts.ExtraPath)
	if err != nil {
		t.Fatalf("containerdtest: %v", err)
	}

	dir := t.TempDir()
	// The socket lives in a short directory of its own: a test's TempDir can
	// be longer than a unix socket path may be (108 bytes).
	sockDir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })

	d := &Daemon{
		binDir:      binDir,
		root:        filepath.Join(dir, "root"),
		state:       filepath.Join(dir, "state"),
		address:     filepath.Join(sockDir, "containerd.sock"),
		namespace:   opts.Namespace,
		snapshotter: opts.Snapshotter,
		logPath:     filepath.Join(dir, "containerd.log"),
		done:        make(chan struct{}),
	}
	if d.namespace == "" {
		d.namespace = fmt.Sprintf("joey-test-%d-%d", os.Getpid(), daemonCount.Add(1))
	}
	for _, p := range []string{d.root, d.state} {
		if err := os.MkdirAll(p, 0o711); err != nil {
			t.Fatalf("containerdtest: %v", err)
		}
	}
	d.pickSnapshotter(t)
	logLevel := opts.LogLevel
	if logLevel == "" {
		logLevel = "debug"
	}
	cfg := daemonConfig{root: d.root, state: d.state, address: d.address, logLevel: logLevel,
		snapshotter: d.snapshotter, extra: opts.ExtraConfig}
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, cfg.render(), 0o644); err != nil {
		t.Fatalf("containerdtest: write config: %v", err)
	}

	began := time.Now()
	if err := d.start(cfgPath, extraPath, opts.Env); err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	t.Cleanup(func() { d.teardown(t) })
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	if err := d.waitReady(timeout); err != nil {
		t.Fatalf("containerdtest: %v", err) // teardown prints the log
	}
	d.ready = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The namespace's default-snapshotter label makes every client (ctr run,
	// the Go client) use the snapshotter chosen above without a flag.
	if _, _, err := d.Ctr(ctx, "namespaces", "create", d.namespace,
		"containerd.io/defaults/snapshotter="+d.snapshotter); err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	t.Logf("containerdtest: containerd ready in %v at %s, namespace %s, log %s",
		time.Since(began).Round(time.Millisecond), d.address, d.namespace, d.logPath)
	return d
}

// binDirFor returns the absolute directory of the containerd binaries, or
// skips (fails) t when they are not there.
func binDirFor(t testing.TB, opts Options) string {
	t.Helper()
	binDir := opts.BinDir
	if binDir == "" && os.Getenv(BinEnv) != "" {
		binDir = fromRepoRoot(os.Getenv(BinEnv))
	}
	if binDir == "" {
		testutil.Unavailable(t, BinEnv+" is not set: run scripts/containerd.sh DIR (make test does) and export "+BinEnv+"=DIR")
	}
	for _, b := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			testutil.Unavailable(t, fmt.Sprintf("%s: %v: run scripts/containerd.sh %s", b, err, binDir))
		}
	}
	abs, err := filepath.Abs(binDir)
	if err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	return abs
}

// fromRepoRoot resolves a relative path against the repository's root (the
// directory of go.mod above the working directory): `go test` runs each
// package in its own directory, so JOEY_CONTAINERD_BIN=.cache/containerd/bin
// given at the root would otherwise point nowhere.
func fromRepoRoot(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		return p
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, p)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return p
		}
		dir = parent
	}
}

// absPaths makes PATH entries absolute: containerd finds shims with
// exec.LookPath, which refuses a match found through a relative entry.
func absPaths(dirs []string) ([]string, error) {
	out := make([]string, len(dirs))
	for i, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("PATH entry %s: %w", d, err)
		}
		out[i] = abs
	}
	return out, nil
}

// pickSnapshotter settles d.snapshotter when Options left it empty and says
// which one the daemon uses, and why, in the test log.
func (d *Daemon) pickSnapshotter(t testing.TB) {
	t.Helper()
	if d.snapshotter != "" {
		t.Logf("containerdtest: snapshotter %s (from Options)", d.snapshotter)
		return
	}
	if err := probeOverlay(d.root); err != nil {
		d.snapshotter = "native"
		t.Logf("containerdtest: snapshotter native: overlayfs does not work here: %v", err)
		return
	}
	d.snapshotter = "overlayfs"
	t.Logf("containerdtest: snapshotter overlayfs (an overlay mount works under %s)", d.root)
}

// start runs containerd. The process is started from a goroutine that keeps
// its OS thread until containerd exits, because the parent-death signal is
// tied to the thread that forked: containerd must go when the test binary
// dies (a panic, a -timeout) and not before.
func (d *Daemon) start(cfgPath string, extraPath, env []string) error {
	logFile, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open containerd log: %w", err)
	}
	path := append(append([]string{}, extraPath...), d.binDir, os.Getenv("PATH"))
	cmd := exec.Command(filepath.Join(d.binDir, "containerd"), "--config", cfgPath)
	cmd.Env = append(withoutEnv(os.Environ(), "PATH"), "PATH="+strings.Join(path, ":"))
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	d.cmd = cmd

	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		defer close(d.done)
		defer logFile.Close()
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("start containerd: %w", err)
			d.waitErr = err
			return
		}
		started <- nil
		d.waitErr = cmd.Wait()
	}()
	return <-started
}

// waitReady polls `ctr version` until the daemon answers.
func (d *Daemon) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return fmt.Errorf("containerd exited before it answered: %v", d.waitErr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, lastErr = d.Ctr(ctx, "--connect-timeout", "1s", "version")
		cancel()
		if lastErr == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("containerd did not answer within %v: %v", timeout, lastErr)
}

// Address is the daemon's gRPC socket, for ctr --address or the Go client.
func (d *Daemon) Address() string { return d.address }

// Namespace is the containerd namespace the tests use; Ctr passes it.
func (d *Daemon) Namespace() string { return d.namespace }

// Snapshotter is the snapshotter images are unpacked into and containers use.
func (d *Daemon) Snapshotter() string { return d.snapshotter }

// LogPath is containerd's log file, which also gets the shims' logs.
func (d *Daemon) LogPath() string { return d.logPath }

// StateDir is containerd's state directory; task bundles live under it.
func (d *Daemon) StateDir() string { return d.state }

// withoutEnv drops the variables named in names from env.
func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// ShimPid returns the pid of the shim process containerd started for task
// id (a shim serving several tasks was started for the first of them). It
// is 0 when no such shim runs.
func (d *Daemon) ShimPid(id string) (int, error) {
	shims, err := processesWithArg("-address", d.address)
	if err != nil {
		return 0, err
	}
	for _, p := range shims {
		if strings.Contains(p.cmdline+" ", " -id "+id+" ") {
			return p.pid, nil
		}
	}
	return 0, nil
}
