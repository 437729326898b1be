package p9fs

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hugelgupf/p9/linux"
	"github.com/joeyrt/joey/vmm/p9fs/p9fstest"
	"golang.org/x/sys/unix"
)

const (
	tLock = 52
	rLock = 53
	noFid = uint32(0xffffffff)
)

// walkOpen walks fid 1 to name as newfid and opens it with flags.
func (r *raw) walkOpen(newfid uint32, name string, flags uint32) {
	r.t.Helper()
	r.ok(p9fstest.Tmsg(tWalk, 2, uint32(1), newfid, uint16(1), name), rWalk)
	r.ok(p9fstest.Tmsg(tLopen, 3, newfid, flags), rLopen)
}

func (r *raw) lock(fid uint32, typ uint8, start, length uint64) uint8 {
	r.t.Helper()
	// Linux's v9fs sets P9_LOCK_FLAGS_BLOCK for F_SETLKW and flock
	// without LOCK_NB; the server answers at once either way.
	body := r.ok(p9fstest.Tmsg(tLock, 4, fid, typ, uint32(1), start, length, uint32(1234), "guest"), rLock)
	return body[0]
}

func TestLocksConflictBetweenFidsAndAreReleasedByUnlockAndClunk(t *testing.T) {
	share, _ := layout(t)
	if err := os.WriteFile(filepath.Join(share, "f"), []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	r := newRaw(t, newServer(t, share, Options{}))
	r.handshake(0)
	// Both opened read-only, as flock's users often do: write locks
	// still work.
	r.walkOpen(2, "f", 0)
	r.walkOpen(3, "f", 0)
	const (
		rd, wr, un        = 0, 1, 2
		ok, blocked uint8 = 0, 1
	)
	for _, step := range []struct {
		what       string
		fid        uint32
		typ        uint8
		start, len uint64
		want       uint8
	}{
		{"a takes the whole file", 2, wr, 0, 0, ok},
		{"b cannot write-lock", 3, wr, 0, 0, blocked},
		{"b cannot read-lock a range", 3, rd, 10, 5, blocked},
		{"a unlocks bytes 0-99", 2, un, 0, 100, ok},
		{"b read-locks bytes 10-14", 3, rd, 10, 5, ok},
		{"b cannot lock from 100 on", 3, rd, 100, 1, blocked},
		{"a cannot write over b's read lock", 2, wr, 12, 1, blocked},
		{"a shares a read lock", 2, rd, 12, 1, ok},
	} {
		if got := r.lock(step.fid, step.typ, step.start, step.len); got != step.want {
			t.Errorf("%s: status %d, want %d", step.what, got, step.want)
		}
	}
	// The host sees a's lock.
	fd, err := unix.Open(filepath.Join(share, "f"), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: 200, Len: 1}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil || lk.Type != unix.F_WRLCK {
		t.Errorf("host F_OFD_GETLK at 200: type %d, %v: want a's write lock", lk.Type, err)
	}
	// Clunking a drops its locks.
	r.ok(p9fstest.Tmsg(tClunk, 5, uint32(2)), rClunk)
	if got := r.lock(3, wr, 100, 0); got != ok {
		t.Errorf("b after a's clunk: status %d, want OK", got)
	}
}

func TestXattrsAndGetlockAreAnsweredEOPNOTSUPPAndXattrWritesEROFSWhenReadOnly(t *testing.T) {
	share, _ := layout(t)
	for _, tc := range []struct {
		readOnly  bool
		wantWrite linux.Errno
	}{{false, linux.EOPNOTSUPP}, {true, linux.EROFS}} {
		r := newRaw(t, newServer(t, share, Options{ReadOnly: tc.readOnly}))
		r.handshake(0)
		for _, m := range []struct {
			what  string
			frame []byte
			want  linux.Errno
		}{
			{"getxattr security.capability", p9fstest.Tmsg(tXattrwlk, 7, uint32(1), uint32(9), "security.capability"), linux.EOPNOTSUPP},
			{"listxattr", p9fstest.Tmsg(tXattrwlk, 7, uint32(1), uint32(9), ""), linux.EOPNOTSUPP},
			{"setxattr", p9fstest.Tmsg(tXattrcrt, 7, uint32(1), "user.x", uint64(1), uint32(0)), tc.wantWrite},
			{"getlock", p9fstest.Tmsg(tGetlock, 7, uint32(1), uint8(1), uint64(0), uint64(0), uint32(1), "guest"), linux.EOPNOTSUPP},
		} {
			if got := r.lerror(m.frame); got != m.want {
				t.Errorf("read-only %v: %s: errno %v, want %v", tc.readOnly, m.what, got, m.want)
			}
		}
	}
}

func TestChmodOverTheWireKeepsSetuidAndSetgidBits(t *testing.T) {
	share, _ := layout(t)
	path := filepath.Join(share, "bin")
	if err := os.WriteFile(path, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRaw(t, newServer(t, share, Options{}))
	r.handshake(0)
	r.ok(p9fstest.Tmsg(tWalk, 2, uint32(1), uint32(2), uint16(1), "bin"), rWalk)
	for _, tc := range []struct {
		valid, mode uint32
		size        uint64
		want        uint32
	}{
		{setattrMode, 0o4755, 0, 0o4755},
		{setattrMode, 0o2711, 0, 0o2711},
		{setattrMode, 0o6755, 0, 0o6755},
		{setattrMode, 0o1777, 0, 0o1777},
		{setattrMode, 0o0644, 0, 0o0644},
		// A size field holding what looks like carried bits, when the
		// size is not being set, carries nothing.
		{setattrMode, 0o0644, carriedModeFlag | 0o6000, 0o0644},
	} {
		r.ok(p9fstest.Tmsg(tSetattr, 3, uint32(2), tc.valid, tc.mode, uint32(0), uint32(0), tc.size,
			uint64(0), uint64(0), uint64(0), uint64(0)), rSetattr)
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		if got := st.Mode & 0o7777; got != tc.want {
			t.Errorf("chmod %#o: mode %#o, want %#o", tc.mode, got, tc.want)
		}
	}
}

func TestFilesAreOwnedByTheUIDTheGuestAttachedWith(t *testing.T) {
	share, _ := layout(t)
	r := newRaw(t, newServer(t, share, Options{}))
	r.handshake(1234)
	r.ok(p9fstest.Tmsg(tWalk, 2, uint32(1), uint32(2), uint16(0)), rWalk)
	r.ok(p9fstest.Tmsg(tLcreate, 3, uint32(2), "file", uint32(2), uint32(0o640), uint32(4321)), rLcreate)
	r.ok(p9fstest.Tmsg(tMkdir, 4, uint32(1), "dir", uint32(0o750), uint32(4321)), rMkdir)
	// A second attach as another user, on another fid.
	r.ok(p9fstest.Tmsg(tAttach, 5, uint32(7), noFid, "other", "", uint32(99)), rAttach)
	r.ok(p9fstest.Tmsg(tMkdir, 6, uint32(7), "other", uint32(0o700), uint32(99)), rMkdir)
	for _, tc := range []struct {
		name     string
		uid, gid uint32
		perm     uint32
	}{
		{"file", 1234, 4321, 0o640},
		{"dir", 1234, 4321, 0o750},
		{"other", 99, 99, 0o700},
	} {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(share, tc.name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != tc.uid || st.Gid != tc.gid || st.Mode&0o7777 != tc.perm {
			t.Errorf("%s: %d:%d %#o, want %d:%d %#o", tc.name, st.Uid, st.Gid, st.Mode&0o7777, tc.uid, tc.gid, tc.perm)
		}
	}
}

func TestMalformedMessagesAreAnsweredUnderTheirOwnTag(t *testing.T) {
	share, _ := layout(t)
	if err := os.WriteFile(filepath.Join(share, "f"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRaw(t, newServer(t, share, Options{}))
	r.handshake(0)
	sizeLies := p9fstest.Tmsg(tClunk, 9, uint32(1))
	sizeLies[0]++
	walkShort := p9fstest.Tmsg(tWalk, 9, uint32(1), uint32(2), uint16(2), "one")
	writeCount := p9fstest.Tmsg(118, 9, uint32(1), uint64(0), uint32(10), uint8(1), uint8(2))
	for _, tc := range []struct {
		what  string
		frame []byte
		want  linux.Errno
	}{
		{"size field disagrees with the message", sizeLies, linux.EINVAL},
		{"walk with fewer names than counted", walkShort, linux.EINVAL},
		{"write whose count is not its data", writeCount, linux.EINVAL},
		{"string running off the end", p9fstest.Tmsg(tMkdir, 9, uint32(1), uint16(50), "x"), linux.EINVAL},
		{"unknown message type", p9fstest.Tmsg(200, 9, uint32(1)), linux.EOPNOTSUPP},
		{"an R-message", p9fstest.Tmsg(rWalk, 9, uint16(0)), linux.EOPNOTSUPP},
		{"larger than msize", p9fstest.Tmsg(tWalk, 9, uint32(1), uint32(2), uint16(2), string(make([]byte, 40<<10)), string(make([]byte, 40<<10))), linux.EMSGSIZE},
	} {
		if got := r.lerror(tc.frame); got != tc.want {
			t.Errorf("%s: errno %v, want %v", tc.what, got, tc.want)
		}
	}
	// The session is still good.
	r.walkOpen(2, "f", 0)
	body := r.ok(p9fstest.Tmsg(tRead, 5, uint32(2), uint64(0), uint32(100)), rRead)
	if got := string(body[4:]); got != "content" {
		t.Errorf("read %q after the bad messages", got)
	}
	if err := r.sess.Submit([]byte{1, 2, 3}); err == nil {
		t.Error("a message without a tag was accepted")
	}
}

func TestATagInFlightIsRefusedAndTversionWaitsForIdle(t *testing.T) {
	share, _ := layout(t)
	r := newRaw(t, newServer(t, share, Options{}))
	s := r.sess
	if errno := s.track(5, tWalk); errno != 0 {
		t.Fatalf("first use of tag 5: %v", errno)
	}
	if errno := s.track(5, tWalk); errno != linux.EINVAL {
		t.Errorf("tag 5 again while in flight: %v, want EINVAL", errno)
	}
	if errno := s.track(noTag, msgTversion); errno != linux.EBUSY {
		t.Errorf("Tversion with a request in flight: %v, want EBUSY", errno)
	}
	s.untrack(5)
	if errno := s.track(5, tWalk); errno != 0 {
		t.Errorf("tag 5 after its reply: %v", errno)
	}
	s.untrack(5)
}

// Sessions closed while their requests are still running answer every
// request they took first, and end without the library's teardown racing
// its own handlers (run with -race).
func TestClosingASessionWithRequestsInFlightAnswersThemAllFirst(t *testing.T) {
	share, _ := layout(t)
	if err := os.WriteFile(filepath.Join(share, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, share, Options{})
	const walkers = 8
	for range 50 {
		var mu sync.Mutex
		replies := 0
		sess, err := srv.NewSession(func([]byte) { mu.Lock(); replies++; mu.Unlock() })
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range [][]byte{
			p9fstest.Tmsg(tVersion, noTag, uint32(8192), "9P2000.L"),
			p9fstest.Tmsg(tAttach, 1, uint32(1), noFid, "u", "", uint32(0)),
		} {
			if err := sess.Submit(m); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for j := range walkers {
			wg.Go(func() {
				if err := sess.Submit(p9fstest.Tmsg(tWalk, uint16(10+j), uint32(1), uint32(10+j), uint16(1), "f")); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		sess.Close()
		if replies != 2+walkers {
			t.Fatalf("%d replies before Close returned, want %d", replies, 2+walkers)
		}
	}
}
