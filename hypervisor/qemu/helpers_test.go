package qemu

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/testutil"
)

// testDriver returns a driver for the QEMU on PATH. A paused driver starts
// QEMU with -S: its devices and QMP work, its guest never runs.
func testDriver(t *testing.T, paused bool) *Driver {
	t.Helper()
	d, err := New(Options{Binary: testutil.RequireQEMU(t), Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d.paused = paused
	return d
}

// shortDir is a fresh directory with a short path: unix socket paths inside
// it must stay under 108 bytes, which t.TempDir (named after the test)
// does not promise.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "jq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// fakeKernel writes a Linux boot-protocol header with no kernel behind it.
// QEMU loads it as a bzImage; under -S it never runs. Tests that need QEMU's
// devices but not a guest use it instead of a real kernel.
func fakeKernel(t *testing.T) string {
	t.Helper()
	const setupSects = 4
	b := make([]byte, (setupSects+1)*512+4096)
	b[0x1f1] = setupSects
	binary.LittleEndian.PutUint16(b[0x1fe:], 0xaa55)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020c) // boot protocol 2.12
	b[0x211] = 1                                     // LOADED_HIGH
	binary.LittleEndian.PutUint32(b[0x22c:], 0x7fffffff)
	binary.LittleEndian.PutUint32(b[0x238:], 2048) // cmdline_size
	p := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// warmUpNetpoll makes the runtime open its poller fds now, so that they do
// not count as leaks of the code under test.
func warmUpNetpoll(t *testing.T) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(shortDir(t), "warm.sock"))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// openFDs counts the test process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// children lists the pids whose parent is the test process.
func children(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name is in parentheses and may hold spaces; ppid is
		// the second field after it.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(self) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processGone reports whether pid no longer exists.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// openTap creates a non-persistent TAP device (gone when its last fd
// closes) and returns its file. Needs root.
func openTap(t *testing.T) *os.File {
	t.Helper()
	testutil.RequireRoot(t)
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		testutil.Unavailable(t, "open /dev/net/tun: "+err.Error())
	}
	ifr, err := unix.NewIfreq("jqtap%d")
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		t.Fatalf("TUNSETIFF: %v", err)
	}
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	t.Cleanup(func() { f.Close() })
	return f
}
