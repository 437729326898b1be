package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/joeyrt/joey/internal/procutil"
	"github.com/joeyrt/joey/persist"
)

func TestFiveSandboxesStartConcurrently(t *testing.T) {
	e := newEnv(t)
	// One of them logs through containerd's file:// log URI instead of
	// fifos: the shim writes both streams to the file.
	logFile := filepath.Join(t.TempDir(), "par5.log")
	began := time.Now()
	t.Run("group", func(t *testing.T) {
		for i := 1; i <= 5; i++ {
			id := fmt.Sprintf("par%d", i)
			t.Run(id, func(t *testing.T) {
				t.Parallel()
				var flags []string
				wantOut := "hello from " + id
				if i == 5 {
					flags = []string{"--log-uri", "file://" + logFile}
					wantOut = ""
				}
				out, errOut, code := e.run(t, id, flags, "sh", "-c", "echo hello from "+id+"; echo and stderr >&2")
				if code != 0 || strings.TrimSpace(out) != wantOut {
					t.Errorf("exit %d, stdout %q (want %q), stderr %q", code, out, wantOut, errOut)
				}
			})
		}
	})
	// The two streams are copied apart, so their order in the file is not
	// fixed; each line must be there once.
	data, err := os.ReadFile(logFile)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	slices.Sort(lines)
	if err != nil || !slices.Equal(lines, []string{"and stderr", "hello from par5"}) {
		t.Errorf("file:// log of par5 = %q, %v; want both streams' lines", data, err)
	}
	t.Logf("five sandboxes, started together, all done in %v", time.Since(began).Round(time.Millisecond))
}

// TestKilledShimIsCleanedUp kills a shim with SIGKILL, which leaves its VM,
// mounts and state behind, and checks that containerd's cleanup (the shim's
// delete command) and `ctr task rm -f` / `ctr c rm` free all of it.
func TestKilledShimIsCleanedUp(t *testing.T) {
	e := newEnv(t)
	// The pod's network namespace as CRI would pass it, with a veth like a
	// CNI plugin makes: whatever the runtime adds there (TAPs, qdiscs)
	// must go with the sandbox.
	netns := podNetns(t)
	e.runDetached(t, "victim", []string{"--with-ns", "network:" + netns}, "sleep", "600")
	ctx := testContext(t, 2*time.Minute)
	store, err := persist.NewStore(e.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Load(ctx, e.d.Namespace(), "victim")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := store.Dir(e.d.Namespace(), "victim")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("persisted sandbox: vmm pid %d, share %s, mounts %v, netns %q (own: %v), endpoints %v",
		st.VMM.Pid, st.ShareDir, st.Mounts, st.Network.NetNS, st.Network.OwnNetNS, st.Network.Endpoints)
	if !procutil.Matches(st.VMM.Pid, st.VMM.StartTime) {
		t.Fatalf("the recorded VMM (pid %d) is not running", st.VMM.Pid)
	}

	shim, err := e.d.ShimPid("victim")
	if err != nil || shim == 0 {
		t.Fatalf("no shim for victim: %v", err)
	}
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, shim)

	// containerd notices the dead shim and runs its delete command; the
	// user then removes what is left. Either may find the task gone.
	if _, _, err := e.d.Ctr(ctx, "task", "rm", "-f", "victim"); err != nil && !strings.Contains(err.Error(), "not found") {
		t.Errorf("ctr task rm -f: %v", err)
	}
	e.ctr(t, "container", "rm", "victim")

	deadline := time.Now().Add(20 * time.Second)
	for procutil.Matches(st.VMM.Pid, st.VMM.StartTime) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if procutil.Matches(st.VMM.Pid, st.VMM.StartTime) {
		t.Errorf("the VMM (pid %d) still runs after the cleanup", st.VMM.Pid)
	}
	if left := processesMentioning(dir); len(left) > 0 {
		t.Errorf("processes still use the sandbox's state directory: %v", left)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state directory %s still exists: %v", dir, err)
	}
	points := append([]string{dir}, st.Mounts...)
	if st.ShareDir != "" {
		points = append(points, st.ShareDir)
	}
	left := map[string]string{}
	for _, p := range points {
		mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(p))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mounts {
			left[m.Mountpoint] = m.FSType
		}
	}
	for p, fstype := range left {
		t.Errorf("mount left: %s (%s)", p, fstype)
	}
	if len(st.Network.Endpoints) == 0 {
		t.Logf("the runtime recorded no network endpoints in %s: no TAP to check", netns)
	}
	if st.Network.NetNS != "" {
		netns = st.Network.NetNS
	}
	if st.Network.OwnNetNS {
		if _, err := os.Stat(netns); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the sandbox's own network namespace %s still exists: %v", netns, err)
		}
	}
	for _, ep := range st.Network.Endpoints {
		if _, err := os.Stat(netns); err != nil {
			continue // the namespace, and so its TAPs, are gone
		}
		out, err := exec.Command("nsenter", "--net="+netns, "ip", "link", "show", ep.Tap).CombinedOutput()
		if err == nil {
			t.Errorf("TAP %s still exists in %s:\n%s", ep.Tap, netns, out)
		}
	}
	if ctx.Err() != nil {
		t.Error(context.Cause(ctx))
	}
}

// processesMentioning lists running processes whose command line contains
// s: a VMM started for a sandbox names its state directory (sockets,
// logs).
func processesMentioning(s string) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []string
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || !bytes.Contains(raw, []byte(s)) {
			continue
		}
		found = append(found, fmt.Sprintf("%d: %s", pid, bytes.ReplaceAll(raw, []byte{0}, []byte{' '})))
	}
	return found
}

// podNetns makes a network namespace holding one end of a veth pair, up and
// addressed, and returns its path; it is removed when t ends.
func podNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("joey-e2e-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	host := fmt.Sprintf("jv%d", os.Getpid()%100000)
	run("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", name)
	run("ip", "-n", name, "link", "set", "eth0", "up")
	run("ip", "-n", name, "addr", "add", "10.199.0.2/24", "dev", "eth0")
	return "/run/netns/" + name
}
