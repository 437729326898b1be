package tap

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestCreateMakesAConfiguredTAPInsideTheNamespace(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"single queue with vnet header", Options{Name: "jt-single", Queues: 1, MTU: 9000, MAC: mustMAC(t, "02:00:00:00:00:11"), VnetHdr: true}},
		{"four queues", Options{Name: "jt-multi", Queues: 4, MTU: 1400, MAC: mustMAC(t, "02:00:00:00:00:22")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newNetNS(t)
			h := nsHandle(t, ns)
			opts := tt.opts
			opts.NetNS = ns
			tp, err := Create(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer tp.Close()
			requireNotOnHost(t, opts.Name)

			link, err := h.LinkByName(opts.Name)
			if err != nil {
				t.Fatalf("link not in the namespace: %v", err)
			}
			tun, ok := link.(*netlink.Tuntap)
			if !ok || tun.Mode != netlink.TUNTAP_MODE_TAP {
				t.Fatalf("link is %s %+v, want a tuntap in tap mode", link.Type(), link)
			}
			a := link.Attrs()
			if a.Index != tp.Index() || tp.Name() != opts.Name {
				t.Errorf("Tap says %s/%d, netlink %s/%d", tp.Name(), tp.Index(), a.Name, a.Index)
			}
			if a.MTU != opts.MTU {
				t.Errorf("MTU %d, want %d", a.MTU, opts.MTU)
			}
			if a.HardwareAddr.String() != opts.MAC.String() {
				t.Errorf("MAC %s, want %s", a.HardwareAddr, opts.MAC)
			}
			if a.Flags&net.FlagUp == 0 {
				t.Errorf("link is not up: %v", a.Flags)
			}
			multi := opts.Queues > 1
			if got := tun.Flags&netlink.TUNTAP_MULTI_QUEUE != 0; got != multi {
				t.Errorf("netlink multi_queue = %v, want %v", got, multi)
			}
			if got := tun.Flags&netlink.TUNTAP_VNET_HDR != 0; got != opts.VnetHdr {
				t.Errorf("netlink vnet_hdr = %v, want %v", got, opts.VnetHdr)
			}
			if tun.Flags&netlink.TUNTAP_NO_PI == 0 {
				t.Errorf("netlink says packet info is on, want IFF_NO_PI")
			}
			if !tun.NonPersist {
				t.Errorf("TAP is persistent, want it to live only as long as its files")
			}
			// The kernel reports the queue count for multi-queue TAPs only.
			if multi && tun.Queues != opts.Queues {
				t.Errorf("netlink counts %d queues, want %d", tun.Queues, opts.Queues)
			}

			files := tp.Files()
			if len(files) != opts.Queues {
				t.Fatalf("%d files, want %d", len(files), opts.Queues)
			}
			for i, f := range files {
				name, flags, err := tunGetIff(f)
				if err != nil {
					t.Fatalf("file %d: TUNGETIFF: %v", i, err)
				}
				if name != opts.Name || flags&unix.IFF_TAP == 0 || flags&unix.IFF_NO_PI == 0 {
					t.Errorf("file %d is attached to %q with flags %#x, want TAP %q with IFF_NO_PI", i, name, flags, opts.Name)
				}
				if got := flags&unix.IFF_MULTI_QUEUE != 0; got != multi {
					t.Errorf("file %d: IFF_MULTI_QUEUE = %v, want %v", i, got, multi)
				}
				if got := flags&unix.IFF_VNET_HDR != 0; got != opts.VnetHdr {
					t.Errorf("file %d: IFF_VNET_HDR = %v, want %v", i, got, opts.VnetHdr)
				}
			}

			if err := tp.Close(); err != nil {
				t.Fatal(err)
			}
			requireOnlyLoopback(t, h)
			if err := files[0].Close(); !errors.Is(err, os.ErrClosed) {
				t.Errorf("closing a file after Tap.Close: %v, want os.ErrClosed (Close owns the files)", err)
			}
		})
	}
}

func TestCreateWithoutNameGetsTheKernelsChoice(t *testing.T) {
	ns := newNetNS(t)
	tp, err := Create(context.Background(), Options{Queues: 1, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if !strings.HasPrefix(tp.Name(), "tap") {
		t.Fatalf("name %q, want the kernel's tapN", tp.Name())
	}
	if _, err := nsHandle(t, ns).LinkByName(tp.Name()); err != nil {
		t.Fatalf("link %q: %v", tp.Name(), err)
	}
}

func TestCreateRefusesAnExistingName(t *testing.T) {
	ns := newNetNS(t)
	h := nsHandle(t, ns)
	first, err := Create(context.Background(), Options{Name: "jt0", Queues: 1, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := Create(context.Background(), Options{Name: "jt0", Queues: 1, NetNS: ns}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Create: %v, want an 'already exists' error", err)
	}
	if _, err := Create(context.Background(), Options{Name: "lo", Queues: 1, NetNS: ns}); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("Create over lo: %v, want EBUSY", err)
	}
	if names := linkNames(t, h); len(names) != 2 {
		t.Fatalf("links %v, want lo and the first jt0 only", names)
	}
	if _, _, err := tunGetIff(first.Files()[0]); err != nil {
		t.Fatalf("the first TAP lost its file: %v", err)
	}
}

func TestPersistentTAPOutlivesCloseAndOpensAgain(t *testing.T) {
	ns := newNetNS(t)
	h := nsHandle(t, ns)
	ctx := context.Background()
	made, err := Create(ctx, Options{Name: "jt-keep", Queues: 2, Persist: true, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	if err := made.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName("jt-keep"); err != nil {
		t.Fatalf("persistent TAP gone after Close: %v", err)
	}

	if _, err := Open(ctx, Options{Name: "jt-keep", Queues: 1, NetNS: ns}); err == nil || !strings.Contains(err.Error(), "multi-queue TAP") {
		t.Fatalf("Open with the wrong queue mode: %v", err)
	}
	opened, err := Open(ctx, Options{Name: "jt-keep", Queues: 3, MTU: 1280, VnetHdr: true, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	if len(opened.Files()) != 3 {
		t.Fatalf("%d files, want 3", len(opened.Files()))
	}
	for i, f := range opened.Files() {
		if name, flags, err := tunGetIff(f); err != nil || name != "jt-keep" || flags&unix.IFF_VNET_HDR == 0 {
			t.Fatalf("file %d: %q %#x %v, want jt-keep with IFF_VNET_HDR", i, name, flags, err)
		}
	}
	link, err := h.LinkByName("jt-keep")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().MTU != 1280 || link.Attrs().Flags&net.FlagUp == 0 || link.Attrs().Index != opened.Index() {
		t.Errorf("after Open: MTU %d flags %v index %d, want 1280, up, %d", link.Attrs().MTU, link.Attrs().Flags, link.Attrs().Index, opened.Index())
	}
	if err := opened.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName("jt-keep"); err != nil {
		t.Fatalf("Close of an opened TAP deleted it: %v", err)
	}

	if err := Delete(ctx, ns, "jt-keep"); err != nil {
		t.Fatal(err)
	}
	requireOnlyLoopback(t, h)
	if err := Delete(ctx, ns, "jt-keep"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second Delete: %v, want fs.ErrNotExist", err)
	}
}

func TestOpenNeverCreates(t *testing.T) {
	ns := newNetNS(t)
	h := nsHandle(t, ns)
	ctx := context.Background()
	if _, err := Open(ctx, Options{Name: "jt-none", Queues: 1, NetNS: ns}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a missing TAP: %v, want fs.ErrNotExist", err)
	}
	if _, err := Open(ctx, Options{Name: "lo", Queues: 1, NetNS: ns}); !errors.Is(err, errNotTap) {
		t.Fatalf("Open of lo: %v, want 'not a TAP'", err)
	}
	if err := Delete(ctx, ns, "lo"); !errors.Is(err, errNotTap) {
		t.Fatalf("Delete of lo: %v, want 'not a TAP'", err)
	}
	requireOnlyLoopback(t, h)
}

func TestSingleQueueTAPTakesOneOpener(t *testing.T) {
	ns := newNetNS(t)
	ctx := context.Background()
	tp, err := Create(ctx, Options{Name: "jt-one", Queues: 1, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if _, err := Open(ctx, Options{Name: "jt-one", Queues: 1, NetNS: ns}); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("second opener: %v, want EBUSY", err)
	}
	if _, err := Open(ctx, Options{Name: "jt-one", Queues: 2, NetNS: ns}); err == nil || !strings.Contains(err.Error(), "single-queue TAP") {
		t.Fatalf("multi-queue open of a single-queue TAP: %v", err)
	}
}

func TestTakeFilesTransfersOwnership(t *testing.T) {
	ns := newNetNS(t)
	h := nsHandle(t, ns)
	tp, err := Create(context.Background(), Options{Name: "jt-take", Queues: 2, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	taken := tp.TakeFiles()
	if len(taken) != 2 {
		t.Fatalf("took %d files, want 2", len(taken))
	}
	if tp.Files() != nil || tp.TakeFiles() != nil {
		t.Fatal("the Tap still hands out files after TakeFiles")
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	// Close deleted the link although the taken files keep it referenced…
	requireOnlyLoopback(t, h)
	// …and left the files open for their new owner, detached from it.
	for i, f := range taken {
		if _, _, err := tunGetIff(f); !errors.Is(err, unix.EBADFD) {
			t.Errorf("taken file %d after Close: TUNGETIFF %v, want EBADFD from a detached TAP file", i, err)
		}
		if err := f.Close(); err != nil {
			t.Errorf("taken file %d: Close: %v (Tap.Close must not close it)", i, err)
		}
	}
	if err := tp.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseAfterTheNewOwnerClosedTheFilesSucceeds(t *testing.T) {
	ns := newNetNS(t)
	h := nsHandle(t, ns)
	tp, err := Create(context.Background(), Options{Name: "jt-gone", Queues: 1, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tp.TakeFiles() {
		f.Close() // the VM exited: its end of the TAP is gone, and so is the link
	}
	requireOnlyLoopback(t, h)
	if err := tp.Close(); err != nil {
		t.Fatalf("Close of a TAP whose link is already gone: %v", err)
	}
}

func TestFailedCreateLeavesNoLink(t *testing.T) {
	ns := newNetNS(t)
	h := nsHandle(t, ns)
	ctx := context.Background()
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	// Allow one more file descriptor per attempt, so Create runs out at
	// each step in turn — a later queue, the netlink socket after the TAP
	// was made persistent — until it has enough. After every failure the
	// rollback must have removed the (persistent) link.
	var failedAt []string
	for extra := 1; extra < 16; extra++ {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		tight := unix.Rlimit{Cur: uint64(len(fds) - 1 + extra), Max: orig.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &tight); err != nil {
			t.Fatal(err)
		}
		tp, err := Create(ctx, Options{Name: "jt-fail", Queues: 2, Persist: true, NetNS: ns})
		if rerr := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); rerr != nil {
			t.Fatalf("restore RLIMIT_NOFILE: %v", rerr)
		}
		if err == nil {
			tp.Close()
			if err := Delete(ctx, ns, "jt-fail"); err != nil {
				t.Fatal(err)
			}
			break
		}
		if !errors.Is(err, unix.EMFILE) {
			t.Fatalf("Create with %d spare fds: %v, want EMFILE", extra, err)
		}
		failedAt = append(failedAt, err.Error())
		t.Log(err)
		requireOnlyLoopback(t, h)
	}
	joined := strings.Join(failedAt, "\n")
	for _, step := range []string{"queue 1:", "netlink:"} {
		if !strings.Contains(joined, step) {
			t.Errorf("no attempt failed at %q; failures:\n%s", step, joined)
		}
	}
}
