// Package builtindev proves the built-in VMM's data devices end to end in
// a real Linux guest: a virtio-9p share the guest uses with real system
// calls (served in process by vmm/p9fs), a virtio-blk disk it formats and
// mounts, and a virtio-net NIC on a TAP it pings across to a veth peer in
// another network namespace. It needs real KVM, so the outer test re-runs
// this test binary inside the nested-KVM harness's L1 guest; there the
// test binary is also copied into the share and run in the L2 guest as
// the probe that exercises the share (TestGuestProbe).
package builtindev

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/netnsexec"
	"github.com/joeyrt/joey/internal/tap"
	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/test/guestimage"
	"github.com/joeyrt/joey/test/nested"
	"github.com/joeyrt/joey/test/nested/builtintest"
	"github.com/joeyrt/joey/vmm/machine"
	"github.com/joeyrt/joey/vmm/vm"
)

// What the host side puts in the share and the guest's probe works on.
const (
	shareTag = "jshare"
	// bigName is a file of bigSize pseudo-random bytes the guest hashes.
	bigName = "big.bin"
	bigSize = 100 << 20
	// manyDir holds manyCount empty files the guest lists. Their names
	// are manyNameLen bytes, so that the 9P listing (24 + 200 bytes an
	// entry) takes more than one Treaddir at msize 262144 and the
	// server's paging by offset is exercised.
	manyDir     = "many"
	manyCount   = 2000
	manyNameLen = 200
	// doomedName is a host file the guest unlinks.
	doomedName = "doomed.txt"
	// hostLockName is a file the host holds a write lock on while the
	// probe runs, which the guest's flock must then be refused.
	hostLockName = "hostlock"
	// probeName is this test binary, copied into the share.
	probeName = "probe.test"

	// The guest's work: createdName is created, then renamed to
	// renamedName, which gets a symlink and a hard link, a new mode and a
	// new owner; syncedName is written and fsynced; lockName is flocked.
	createdName = "created.txt"
	renamedName = "renamed.txt"
	symlinkName = "symlink"
	hardName    = "hard.txt"
	syncedName  = "synced.txt"
	lockName    = "lock"
	createdText = "written by the guest through 9p\n"
	syncedText  = "fsynced by the guest through 9p\n"
	chmodMode   = 0o640
	chownUID    = 1234
	chownGID    = 5678

	// probeEnv names the share's mount point in the guest; it makes
	// TestGuestProbe do its work.
	probeEnv = "JOEY_GUEST_PROBE"
	// probePrefix starts each result line the probe prints.
	probePrefix = "PROBE "
)

// The network: the guest's NIC on a TAP in namespace A, routed by A to a
// veth peer in namespace B. Nothing touches L1's own namespace.
const (
	tapName   = "jdev-tap"
	vethA     = "jdev-va"
	vethB     = "jdev-vb"
	guestIP   = "10.0.0.1"
	tapAddr   = "10.0.0.254/24"
	vethAAddr = "10.1.0.1/24"
	vethBAddr = "10.1.0.2/24"
	vethAIP   = "10.1.0.1"
	peerIP    = "10.1.0.2"
)

// guestMAC is fixed and locally administered (0x02 set, 0x01 clear).
var guestMAC = net.HardwareAddr{0x02, 0x6a, 0x6f, 0x65, 0x79, 0x01}

const (
	diskSize   = 64 << 20
	diskSerial = "joey-dev-disk"
)

func TestBuiltinVMMSharesDisksAndNetworkWithTheGuest(t *testing.T) {
	builtintest.Run(t, "github.com/joeyrt/joey/test/nested/builtindev", 420*time.Second, inner)
}

func inner(t *testing.T, img string) {
	// Under /run, L1's tmpfs: the job share is itself 9p, and the share
	// must be a plain local directory like a real one.
	dir, err := os.MkdirTemp("/run", "jdev")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	share := filepath.Join(dir, "share")
	start := time.Now()
	bigSum := prepareShare(t, share)
	t.Logf("share prepared in %v", time.Since(start).Round(time.Millisecond))
	disk := filepath.Join(dir, "disk.img")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(diskSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	nsA, nsB := setupNetwork(t)

	before := runtime.NumGoroutine()
	v, sh, console := boot(t, img, share, disk, nsA)
	defer func() {
		if v != nil {
			v.Close()
		}
	}()
	defer func() {
		if !t.Failed() {
			return
		}
		t.Logf("guest console tail:\n%s", builtintest.Tail(console.String(), 4000))
		if v == nil {
			return
		}
		select {
		case <-v.Done():
			if end := v.Wait(); end.Reason != machine.Stopped {
				nested.ReportL2Death(end)
			}
		default:
		}
	}()

	checkShare(t, sh, share, bigSum)
	diskPayload := checkDisk(t, sh)
	checkNetwork(t, sh, nsB)

	builtintest.Shutdown(t, &v, before)
	checkDiskImage(t, disk, diskPayload)
}

// boot starts the VM with the share, the disk and a NIC on a new queue of
// the TAP in nsA, and waits for the guest's shell.
func boot(t *testing.T, img, share, disk, nsA string) (*vm.VM, *guestimage.Shell, *testutil.SyncBuffer) {
	var sh *guestimage.Shell
	v, console := builtintest.Boot(t, img, "guest shell", func(cfg *vm.Config) {
		// The TAP persists across boots with its address; each VM owns
		// (and closes) a queue file of its own.
		q, err := tap.Open(context.Background(), tap.Options{Name: tapName, Queues: 1, VnetHdr: true, NetNS: nsA})
		if err != nil {
			t.Fatal(err)
		}
		files := q.TakeFiles()
		q.Close()
		cfg.Shares = []vm.Share{{Tag: shareTag, Dir: share}}
		cfg.Disks = []vm.Disk{{Path: disk, Serial: diskSerial}}
		cfg.NICs = []vm.NIC{{TAP: files[0], MAC: guestMAC}}
	}, func(v *vm.VM) error {
		conn, err := v.Port(builtintest.ShellPort)
		if err != nil {
			t.Fatal(err)
		}
		sh = guestimage.NewShell(conn, v.Done())
		// A healthy boot reaches the shell in 8 to 15 s; one silent for a
		// minute has hung.
		out, rc, err := sh.Run("echo shell-$((6*7))", 60*time.Second)
		if err == nil && rc == 0 && strings.Contains(out, "shell-42") {
			return nil
		}
		return fmt.Errorf("%v, rc %d: %q", err, rc, out)
	})
	return v, sh, console
}

// prepareShare fills the share with what the probe works on and returns
// the SHA-256 of the big file.
func prepareShare(t *testing.T, share string) string {
	if err := os.MkdirAll(filepath.Join(share, manyDir), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(share, bigName))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	// A fixed seed: the content only has to be incompressible and known.
	src := io.LimitReader(rand.NewChaCha8([32]byte{'j', 'o', 'e', 'y'}), bigSize)
	if _, err := io.CopyBuffer(io.MultiWriter(f, h), src, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range manyCount {
		if err := os.WriteFile(filepath.Join(share, manyDir, manyEntry(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{doomedName, hostLockName} {
		if err := os.WriteFile(filepath.Join(share, name), []byte("prepared by the host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, self, filepath.Join(share, probeName), 0o755)
	return hex.EncodeToString(h.Sum(nil))
}

func manyEntry(i int) string {
	name := fmt.Sprintf("entry-%04d-", i)
	return name + strings.Repeat("x", manyNameLen-len(name))
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkShare mounts the share in the guest, runs the probe there and then
// checks on the host that what the guest did is in the directory.
func checkShare(t *testing.T, sh *guestimage.Shell, share, bigSum string) {
	mount := "mkdir -p /mnt/share && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 " + shareTag + " /mnt/share"
	if out, rc, err := sh.Run(mount, time.Minute); err != nil || rc != 0 {
		t.Fatalf("mount the share in the guest: rc %d, %v:\n%s", rc, err, out)
	}
	// The p9fs server locks with OFD locks on the host, so an OFD write
	// lock held here conflicts with any lock the guest takes there.
	hostLock, err := os.OpenFile(filepath.Join(share, hostLockName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer hostLock.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(hostLock.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatalf("lock %s on the host: %v", hostLockName, err)
	}
	start := time.Now()
	out, rc, err := sh.Run(fmt.Sprintf("%s=/mnt/share /mnt/share/%s -test.run '^TestGuestProbe$' -test.v -test.count=1", probeEnv, probeName), 5*time.Minute)
	if err != nil || rc != 0 || !strings.Contains(out, "--- PASS: TestGuestProbe") {
		t.Fatalf("the probe failed in the guest: rc %d, %v:\n%s", rc, err, out)
	}
	t.Logf("probe ran in the guest in %v: %s", time.Since(start).Round(time.Millisecond), probeLog(out))
	res := probeResults(out)

	if got := res["sha256"]; got != bigSum {
		t.Errorf("guest's sha256 of %s is %q, the host's %s", bigName, got, bigSum)
	}
	if got := res["readdir"]; got != strconv.Itoa(manyCount) {
		t.Errorf("guest listed %q entries in %s, want %d", got, manyDir, manyCount)
	}
	if got := res["flock"]; got != "exclusive" {
		t.Errorf("guest's flock result %q, want exclusive", got)
	}
	if got := res["hostlock"]; got != "refused" {
		t.Errorf("guest's flock of the file the host holds locked: %q, want refused", got)
	}
	for _, name := range []string{createdName, doomedName} {
		if _, err := os.Lstat(filepath.Join(share, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still on the host after the guest renamed or unlinked it: %v", name, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(share, renamedName)); err != nil || string(b) != createdText {
		t.Errorf("host reads %s as %q (%v), want %q", renamedName, b, err, createdText)
	}
	if target, err := os.Readlink(filepath.Join(share, symlinkName)); err != nil || target != renamedName {
		t.Errorf("host reads symlink %s as %q (%v), want %q", symlinkName, target, err, renamedName)
	}
	st := lstat(t, filepath.Join(share, renamedName))
	if hard := lstat(t, filepath.Join(share, hardName)); hard.Ino != st.Ino || st.Nlink != 2 {
		t.Errorf("host sees %s inode %d with %d links and %s inode %d, want one inode with 2", renamedName, st.Ino, st.Nlink, hardName, hard.Ino)
	}
	if st.Mode&0o7777 != chmodMode || st.Uid != chownUID || st.Gid != chownGID {
		t.Errorf("host sees %s mode %#o owner %d:%d, want %#o %d:%d", renamedName, st.Mode&0o7777, st.Uid, st.Gid, chmodMode, chownUID, chownGID)
	}
	if b, err := os.ReadFile(filepath.Join(share, syncedName)); err != nil || string(b) != syncedText {
		t.Errorf("host reads %s as %q (%v), want %q", syncedName, b, err, syncedText)
	}
	if t.Failed() {
		t.FailNow()
	}
}

func lstat(t *testing.T, path string) unix.Stat_t {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// probeLog keeps the probe's result and log lines, on one line: the
// outer test's summary of the inner run shows single log lines only.
func probeLog(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, probePrefix) || strings.Contains(line, "_test.go:") {
			keep = append(keep, strings.TrimSpace(guestimage.StripPrompt(line)))
		}
	}
	return strings.Join(keep, "; ")
}

// probeResults collects the probe's "PROBE key value" lines.
func probeResults(out string) map[string]string {
	res := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		i := strings.Index(line, probePrefix)
		if i < 0 {
			continue
		}
		if k, v, ok := strings.Cut(strings.TrimSpace(line[i+len(probePrefix):]), " "); ok {
			res[k] = v
		}
	}
	return res
}

// checkDisk formats the disk in the guest, mounts it, writes a file, and
// reads it back after a remount with the caches dropped, so the bytes come
// from the device. It returns the file's content, which the host then
// finds in the image.
func checkDisk(t *testing.T, sh *guestimage.Shell) string {
	payload := fmt.Sprintf("joey-disk-payload-%016x", rand.Uint64())
	out, rc, err := sh.Run("cat /sys/block/vda/ro /sys/block/vda/size /sys/block/vda/serial", time.Minute)
	if err != nil || rc != 0 {
		t.Fatalf("read /sys/block/vda in the guest: rc %d, %v:\n%s", rc, err, out)
	}
	if f := strings.Fields(guestimage.StripPrompt(out)); len(f) < 3 || f[0] != "0" || f[1] != strconv.Itoa(diskSize/512) || f[2] != diskSerial {
		t.Fatalf("/sys/block/vda shows ro, size, serial %q, want 0 %d %s", f, diskSize/512, diskSerial)
	}
	script := "mke2fs -F /dev/vda && mkdir -p /mnt/disk && mount -t ext4 /dev/vda /mnt/disk && " +
		"echo " + payload + " > /mnt/disk/hello.txt && umount /mnt/disk && echo 3 > /proc/sys/vm/drop_caches && " +
		"mount -t ext4 /dev/vda /mnt/disk && echo READ-BACK $(cat /mnt/disk/hello.txt) && umount /mnt/disk"
	out, rc, err = sh.Run(script, 3*time.Minute)
	if err != nil || rc != 0 || !strings.Contains(out, "READ-BACK "+payload) {
		t.Fatalf("format, mount, write and read back /dev/vda in the guest: rc %d, %v:\n%s", rc, err, out)
	}
	return payload
}

// checkDiskImage proves from the host, once the VM is gone, that the
// image holds the ext2 file system the guest made and the file it wrote.
func checkDiskImage(t *testing.T, disk, payload string) {
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != diskSize {
		t.Fatalf("disk image is %d bytes, want %d", len(b), diskSize)
	}
	// The superblock starts at byte 1024; s_magic is at offset 56 in it.
	if magic := uint16(b[1080]) | uint16(b[1081])<<8; magic != 0xEF53 {
		t.Fatalf("disk image has %#04x at byte 1080, want the ext2 magic 0xef53", magic)
	}
	if !bytes.Contains(b, []byte(payload)) {
		t.Fatalf("disk image does not hold the file content %q the guest wrote", payload)
	}
}

// setupNetwork makes namespace A, holding the persistent TAP (10.0.0.254)
// and one end of a veth pair (10.1.0.1) and forwarding between them, and
// namespace B, holding the other end (10.1.0.2) with a default route back
// through A. It returns both namespaces' paths.
func setupNetwork(t *testing.T) (nsA, nsB string) {
	nsA, nsB = testutil.NewNetNS(t), testutil.NewNetNS(t)
	ctx := context.Background()
	q, err := tap.Create(ctx, tap.Options{Name: tapName, Queues: 1, VnetHdr: true, Persist: true, NetNS: nsA})
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the namespaces' unmounts, so it runs before them.
	t.Cleanup(func() {
		if err := tap.Delete(ctx, nsA, tapName); err != nil {
			t.Errorf("delete the TAP: %v", err)
		}
	})
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	hA, hB := handleIn(t, nsA), handleIn(t, nsB)
	nsBHandle, err := netns.GetFromPath(nsB)
	if err != nil {
		t.Fatal(err)
	}
	defer nsBHandle.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: vethA}, PeerName: vethB, PeerNamespace: netlink.NsFd(nsBHandle)}
	if err := hA.LinkAdd(veth); err != nil {
		t.Fatalf("add veth pair: %v", err)
	}
	testutil.AddrUp(t, hA, tapName, tapAddr)
	testutil.AddrUp(t, hA, vethA, vethAAddr)
	testutil.AddrUp(t, hB, vethB, vethBAddr)
	if err := hB.RouteAdd(&netlink.Route{Gw: net.ParseIP(vethAIP)}); err != nil {
		t.Fatalf("default route in B: %v", err)
	}
	// /proc/sys/net shows the namespace of the thread that opens it.
	err = netnsexec.Run(nsA, func() error {
		const knob = "/proc/sys/net/ipv4/ip_forward"
		if err := os.WriteFile(knob, []byte("1\n"), 0); err != nil {
			return err
		}
		b, err := os.ReadFile(knob)
		if err == nil && strings.TrimSpace(string(b)) != "1" {
			err = fmt.Errorf("%s reads %q after writing 1", knob, b)
		}
		return err
	})
	if err != nil {
		t.Fatalf("enable forwarding in A: %v", err)
	}
	return nsA, nsB
}

func handleIn(t *testing.T, path string) *netlink.Handle {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	// Route only: L1 lacks the xfrm and netfilter families a handle
	// asks for by default.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// checkNetwork configures the guest's NIC and pings the veth peer in B,
// which only A's forwarding between the TAP and the veth pair reaches.
func checkNetwork(t *testing.T, sh *guestimage.Shell, nsB string) {
	out, rc, err := sh.Run("cat /sys/class/net/eth0/address", time.Minute)
	if err != nil || rc != 0 || !strings.Contains(out, guestMAC.String()) {
		t.Fatalf("guest's eth0 does not have the MAC %s: rc %d, %v:\n%s", guestMAC, rc, err, out)
	}
	before := rxPackets(t, nsB)
	script := fmt.Sprintf("ip addr add %s/24 dev eth0 && ip link set eth0 up && ip route add default via %s && ping -c 3 -W 5 %s",
		guestIP, strings.Split(tapAddr, "/")[0], peerIP)
	out, rc, err = sh.Run(script, 2*time.Minute)
	if err != nil || rc != 0 || !strings.Contains(out, "3 packets received") {
		t.Fatalf("guest cannot ping %s in namespace B: rc %d, %v:\n%s", peerIP, rc, err, out)
	}
	got := rxPackets(t, nsB) - before
	if got < 3 {
		t.Fatalf("%s in B received %d packets during the ping, want at least the 3 echo requests", vethB, got)
	}
	t.Logf("guest pinged %s across the TAP and namespace A; %s received %d packets", peerIP, vethB, got)
}

func rxPackets(t *testing.T, nsB string) uint64 {
	h := handleIn(t, nsB)
	link, err := h.LinkByName(vethB)
	if err != nil {
		t.Fatal(err)
	}
	return link.Attrs().Statistics.RxPackets
}

// TestGuestProbe is the guest half of the share check: the outer test
// copies this test binary into the share and runs it in the guest with
// JOEY_GUEST_PROBE set to the share's mount point. It does the file
// operations with real system calls, checks what the guest sees, and
// prints "PROBE key value" lines the host side checks against the share.
// Without JOEY_GUEST_PROBE it has nothing to do.
func TestGuestProbe(t *testing.T) {
	root := os.Getenv(probeEnv)
	if root == "" {
		return
	}
	// Set, it must name the mounted share: anything else is a broken
	// run, not a reason to pass.
	if _, err := os.Stat(filepath.Join(root, probeName)); err != nil {
		t.Fatalf("%s=%q does not name the share: %v", probeEnv, root, err)
	}
	at := func(name string) string { return filepath.Join(root, name) }
	report := func(key string, v any) { fmt.Printf("%s%s %v\n", probePrefix, key, v) }

	// create + write, then rename.
	f, err := os.OpenFile(at(createdName), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(createdText); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(at(createdName), at(renamedName)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(at(createdName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after rename: %v, want not exist", createdName, err)
	}
	if b, err := os.ReadFile(at(renamedName)); err != nil || string(b) != createdText {
		t.Fatalf("%s reads %q (%v), want %q", renamedName, b, err, createdText)
	}

	// unlink.
	if err := syscall.Unlink(at(doomedName)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(at(doomedName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after unlink: %v, want not exist", doomedName, err)
	}

	// symlink: the guest resolves it in its own view.
	if err := os.Symlink(renamedName, at(symlinkName)); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(at(symlinkName)); err != nil || target != renamedName {
		t.Fatalf("readlink %s = %q (%v), want %q", symlinkName, target, err, renamedName)
	}
	if b, err := os.ReadFile(at(symlinkName)); err != nil || string(b) != createdText {
		t.Fatalf("read through %s: %q (%v), want %q", symlinkName, b, err, createdText)
	}

	// hard link.
	if err := os.Link(at(renamedName), at(hardName)); err != nil {
		t.Fatal(err)
	}
	var st, hst syscall.Stat_t
	if err := syscall.Stat(at(renamedName), &st); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(at(hardName), &hst); err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 2 || hst.Ino != st.Ino {
		t.Fatalf("after link: %s inode %d nlink %d, %s inode %d; want one inode with nlink 2", renamedName, st.Ino, st.Nlink, hardName, hst.Ino)
	}
	report("nlink", st.Nlink)

	// chmod and chown.
	if err := syscall.Chmod(at(renamedName), chmodMode); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chown(at(renamedName), chownUID, chownGID); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(at(renamedName), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != chmodMode || st.Uid != chownUID || st.Gid != chownGID {
		t.Fatalf("after chmod and chown: mode %#o owner %d:%d, want %#o %d:%d", st.Mode&0o7777, st.Uid, st.Gid, chmodMode, chownUID, chownGID)
	}
	report("mode", fmt.Sprintf("%#o", st.Mode&0o7777))
	report("owner", fmt.Sprintf("%d:%d", st.Uid, st.Gid))

	// readdir: every entry exactly once.
	d, err := os.Open(at(manyDir))
	if err != nil {
		t.Fatal(err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Fatalf("readdir of %s lists %s twice", manyDir, n)
		}
		seen[n] = true
	}
	for i := range manyCount {
		if !seen[manyEntry(i)] {
			t.Fatalf("readdir of %s (%d entries) lacks %s", manyDir, len(names), manyEntry(i))
		}
	}
	if len(names) != manyCount {
		t.Fatalf("readdir of %s lists %d entries, want %d", manyDir, len(names), manyCount)
	}
	report("readdir", len(names))

	// sha256 of the big file, in msize-sized reads.
	start := time.Now()
	big, err := os.Open(at(bigName))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, big, make([]byte, 1<<20))
	big.Close()
	if err != nil {
		t.Fatal(err)
	}
	if n != bigSize {
		t.Fatalf("read %d bytes of %s, want %d", n, bigName, bigSize)
	}
	t.Logf("hashed %d MiB in %v", n>>20, time.Since(start).Round(time.Millisecond))
	report("sha256", hex.EncodeToString(h.Sum(nil)))

	// fsync.
	f, err = os.OpenFile(at(syncedName), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(syncedText); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", syncedName, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	report("fsync", "ok")

	// flock: two opens of one file are two lock owners.
	report("flock", probeFlock(t, at(lockName)))

	// flock of a file the host holds a write lock on: the lock reaches
	// the host, and its conflict comes back as EWOULDBLOCK.
	hl, err := os.OpenFile(at(hostLockName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	err = unix.Flock(int(hl.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("flock LOCK_EX|LOCK_NB of %s, which the host holds locked: %v, want EWOULDBLOCK", hostLockName, err)
	}
	report("hostlock", "refused")
}

// probeFlock checks that LOCK_EX on one open file excludes a second open
// of the same file until LOCK_UN, and returns "exclusive" when it does.
func probeFlock(t *testing.T, path string) string {
	a, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := unix.Flock(int(a.Fd()), unix.LOCK_EX); err != nil {
		t.Fatalf("flock LOCK_EX: %v", err)
	}
	err = unix.Flock(int(b.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("flock LOCK_EX|LOCK_NB on a second open while the first holds LOCK_EX: %v, want EWOULDBLOCK", err)
	}
	if err := unix.Flock(int(a.Fd()), unix.LOCK_UN); err != nil {
		t.Fatalf("flock LOCK_UN: %v", err)
	}
	if err := unix.Flock(int(b.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("flock LOCK_EX|LOCK_NB on the second open after LOCK_UN: %v", err)
	}
	if err := unix.Flock(int(b.Fd()), unix.LOCK_UN); err != nil {
		t.Fatalf("flock LOCK_UN: %v", err)
	}
	return "exclusive"
}
