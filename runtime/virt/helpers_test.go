package virt

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/hypervisor/qemu"
	"github.com/joeyrt/joey/internal/ociimage"
	"github.com/joeyrt/joey/internal/procutil"
	"github.com/joeyrt/joey/internal/testutil"
)

var registerOnce sync.Once

// vmConfigForTest returns a configuration that boots the test guest image
// with state under a fresh short directory (unix socket paths in it must
// stay short), after checking the test can boot VMs at all.
func vmConfigForTest(t *testing.T) *config.Config {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireQEMU(t)
	img := testutil.GuestImage(t)
	registerOnce.Do(func() {
		d, err := qemu.New(qemu.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := hypervisor.Register(d); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
			t.Fatal(err)
		}
	})
	return testConfig(t, img)
}

// testConfig is the default configuration with the image and state where
// the test wants them.
func testConfig(t *testing.T, imageDir string) *config.Config {
	t.Helper()
	root, err := os.MkdirTemp("", "joeyvirt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Never remove a directory with something still mounted in it: a
		// failed test must not take the files of a bound volume along.
		if left := mountsUnder(t, root); len(left) > 0 {
			t.Errorf("left mounted under %s: %q", root, left)
			for i := len(left) - 1; i >= 0; i-- {
				unix.Unmount(left[i], unix.MNT_DETACH)
			}
		}
		os.RemoveAll(root)
	})
	cfg := config.Default()
	cfg.Image.Dir = imageDir
	cfg.Runtime.StateDir = root
	cfg.Agent.DialTimeout = config.Duration{Duration: 90 * time.Second}
	return cfg
}

// mountsUnder reads /proc/self/mountinfo for mounts at dir or below.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

// busyboxBundle writes a bundle whose rootfs is the busybox image.
func busyboxBundle(t *testing.T) string {
	t.Helper()
	bundle := t.TempDir()
	if err := ociimage.BusyboxRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		testutil.Unavailable(t, err.Error())
	}
	return bundle
}

// containerSpec is runc's example spec (what `runc spec` writes) running
// args without a terminal.
func containerSpec(args ...string) *specs.Spec {
	s := specconv.Example()
	s.Process.Terminal = false
	s.Process.Args = args
	s.Hostname = "joey-test"
	return s
}

// processGone reports whether pid is no process, or a zombie.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	return procutil.Zombie(pid)
}

// processesMentioning lists pids whose command line contains s.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte(s)) && !procutil.Zombie(atoi(e.Name())) {
			pids = append(pids, e.Name()+": "+strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return pids
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// syncBuffer is a bytes.Buffer safe for the output copies and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
