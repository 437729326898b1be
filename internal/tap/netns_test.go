package tap

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/joeyrt/joey/internal/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// newNetNS makes a network namespace of the test's own, pinned by a bind
// mount under t.TempDir(), and returns its path. Cleanup unmounts it and
// fails the test if the mount stays behind.
func newNetNS(t *testing.T) string {
	t.Helper()
	var path string
	// Registered first so it runs last, after NewNetNS's unmount.
	t.Cleanup(func() {
		if path != "" && mounted(t, path) {
			t.Errorf("namespace mount %s left behind", path)
		}
	})
	path = testutil.NewNetNS(t)
	return path
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == path {
			return true
		}
	}
	return false
}

// nsHandle is a netlink handle inside the namespace at path, to look at the
// TAP the way any other process there would.
func nsHandle(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// linkNames lists the links in the namespace h is in.
func linkNames(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// requireOnlyLoopback fails t unless the namespace holds nothing but lo.
func requireOnlyLoopback(t *testing.T, h *netlink.Handle) {
	t.Helper()
	if names := linkNames(t, h); len(names) != 1 || names[0] != "lo" {
		t.Fatalf("links left in the namespace: %v, want only lo", names)
	}
}

// requireNotOnHost fails t if a link called name exists in the test
// process's own namespace: the host's namespace must not be touched.
func requireNotOnHost(t *testing.T, name string) {
	t.Helper()
	_, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("link %q looked up in the host namespace: err = %v, want not found", name, err)
	}
}

// tunGetIff asks a queue file which TAP it is attached to (TUNGETIFF).
func tunGetIff(f *os.File) (string, uint16, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", 0, err
	}
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return "", 0, err
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr) }); err != nil {
		return "", 0, err
	}
	if ioErr != nil {
		return "", 0, ioErr
	}
	return ifr.Name(), ifr.Uint16(), nil
}

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
