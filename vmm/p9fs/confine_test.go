package p9fs

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

func TestWalkOfDotDotOrSlashedNamesOverTheWireCannotLeaveTheRoot(t *testing.T) {
	share, _ := layout(t)
	if err := os.Mkdir(filepath.Join(share, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := attach(t, newServer(t, share, Options{}))
	for _, names := range [][]string{
		{".."},
		{"..", ".."},
		{"sub", "..", ".."},
		{"../outside"},
		{"sub/../../outside"},
		{"/"},
		{"/etc"},
		{"..", "outside", "secret"},
		{""},
	} {
		_, f, err := root.Walk(names)
		if err == nil {
			f.Close()
			t.Errorf("walk %q succeeded, want an error", names)
		}
	}
}

func TestDotDotAtTheRootStaysAtTheRootForDirectCallers(t *testing.T) {
	share, _ := layout(t)
	if err := os.MkdirAll(filepath.Join(share, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, share, Options{})
	rootFile, err := srv.attachRoot(p9.NoUID, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rootFile.Close()
	rootQID, _, _, err := rootFile.GetAttr(p9.AttrMaskAll)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		names []string
		want  linux.Errno // 0: ends at the root
	}{
		{[]string{".."}, 0},
		{[]string{"..", ".."}, 0},
		{[]string{"a", ".."}, 0},
		{[]string{"a", "b", "..", "..", "..", ".."}, 0},
		{[]string{".", "a", ".", ".."}, 0},
		{[]string{"..", "outside"}, linux.ENOENT},
		{[]string{"..", "..", "outside", "secret"}, linux.ENOENT},
		{[]string{"a/../.."}, linux.EINVAL},
		{[]string{"a", "../.."}, linux.EINVAL},
		{[]string{""}, linux.EINVAL},
	} {
		qids, f, err := rootFile.Walk(tc.names)
		if tc.want != 0 {
			wantErrno(t, strings.Join(tc.names, ","), err, tc.want)
			if err == nil {
				f.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("walk %q: %v", tc.names, err)
			continue
		}
		if got := qids[len(qids)-1]; got != rootQID {
			t.Errorf("walk %q ends at %v, want the root %v", tc.names, got, rootQID)
		}
		f.Close()
	}
}

func TestSymlinksToTheOutsideAreReportedAsLinksAndNeverFollowed(t *testing.T) {
	share, outside := layout(t)
	links := map[string]string{
		"slash":   "/",
		"abs":     outside,
		"absfile": filepath.Join(outside, "secret"),
		"rel":     "../outside",
		"relfile": "../outside/secret",
		"etc":     "../../etc",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(share, name)); err != nil {
			t.Fatal(err)
		}
	}
	root := attach(t, newServer(t, share, Options{}))
	for name, target := range links {
		qids, f, err := root.Walk([]string{name})
		if err != nil {
			t.Errorf("walk %s: %v", name, err)
			continue
		}
		if qids[0].Type != p9.TypeSymlink {
			t.Errorf("walk %s: QID type %v, want a symlink", name, qids[0].Type)
		}
		if _, _, attr, err := f.GetAttr(p9.AttrMaskAll); err != nil || !attr.Mode.IsSymlink() {
			t.Errorf("getattr %s: mode %v, %v: want a symlink", name, attr.Mode, err)
		}
		if got, err := f.Readlink(); err != nil || got != target {
			t.Errorf("readlink %s = %q, %v; want %q", name, got, err, target)
		}
		if _, _, err := f.Open(p9.ReadOnly); err == nil {
			t.Errorf("open of symlink %s succeeded", name)
			buf := make([]byte, 64)
			if n, _ := f.ReadAt(buf, 0); strings.Contains(string(buf[:n]), secret) {
				t.Errorf("read the host secret through %s", name)
			}
		}
		f.Close()
		for _, rest := range []string{"secret", "passwd", "outside"} {
			if _, g, err := root.Walk([]string{name, rest}); err == nil {
				g.Close()
				t.Errorf("walk %s/%s went through the link", name, rest)
			}
		}
	}
}

func TestHardlinkOfASymlinkLinksTheLinkNotTheOutsideFile(t *testing.T) {
	share, outside := layout(t)
	secretPath := filepath.Join(outside, "secret")
	if err := os.Symlink(secretPath, filepath.Join(share, "ln")); err != nil {
		t.Fatal(err)
	}
	root := attach(t, newServer(t, share, Options{}))
	ln := walk(t, root, "ln")
	if err := root.Link(ln, "hard"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(share, "hard"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("hard link is %v, want the symlink's inode", fi.Mode())
	}
	var st unix.Stat_t
	if err := unix.Stat(secretPath, &st); err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 1 {
		t.Errorf("outside file has %d links, want 1", st.Nlink)
	}
}

func TestCreatingOverAPlantedSymlinkNeverWritesOutside(t *testing.T) {
	share, outside := layout(t)
	target := filepath.Join(outside, "created")
	if err := os.Symlink(target, filepath.Join(share, "planted")); err != nil {
		t.Fatal(err)
	}
	root := attach(t, newServer(t, share, Options{}))
	if _, _, _, err := root.Create("planted", p9.ReadWrite, 0o644, p9.NoUID, p9.NoGID); err == nil {
		t.Error("create over a symlink succeeded")
	}
	if _, err := root.Mkdir("planted", 0o755, p9.NoUID, p9.NoGID); err == nil {
		t.Error("mkdir over a symlink succeeded")
	}
	if _, err := root.Mknod("planted", p9.ModeNamedPipe|0o644, 0, 0, p9.NoUID, p9.NoGID); err == nil {
		t.Error("mknod over a symlink succeeded")
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("something was created outside: %v", err)
	}
	// Truncating through the link's fid must not reach the target either.
	if err := os.WriteFile(target, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	planted := walk(t, root, "planted")
	if err := planted.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{Size: 0}); err == nil {
		t.Error("truncate of a symlink succeeded")
	}
	if b, _ := os.ReadFile(target); string(b) != secret {
		t.Errorf("outside file now holds %q", b)
	}
}

// A directory component is swapped for a symlink to the outside (and
// back) as fast as the host can while the client walks through it and
// reads: every read must see the inside file or fail, never the secret.
func TestSwappingADirectoryForASymlinkNeverExposesTheOutside(t *testing.T) {
	share, outside := layout(t)
	if err := os.Mkdir(filepath.Join(share, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(share, "d", "secret"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(share, "swap")); err != nil {
		t.Fatal(err)
	}
	root := attach(t, newServer(t, share, Options{}))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var swaps atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		d, s := filepath.Join(share, "d"), filepath.Join(share, "swap")
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := unix.Renameat2(unix.AT_FDCWD, d, unix.AT_FDCWD, s, unix.RENAME_EXCHANGE); err != nil {
				t.Errorf("swap: %v", err)
				return
			}
			swaps.Add(1)
		}
	}()

	var inside, failed int
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline) || inside == 0 && i < 100000; i++ {
		var f p9.File
		var err error
		if i%2 == 0 {
			_, f, err = root.Walk([]string{"d", "secret"})
		} else {
			// Two steps, two round trips: the widest window.
			var dir p9.File
			if _, dir, err = root.Walk([]string{"d"}); err == nil {
				_, f, err = dir.Walk([]string{"secret"})
				dir.Close()
			}
		}
		if err != nil {
			failed++
			continue
		}
		if _, _, err := f.Open(p9.ReadOnly); err != nil {
			failed++
			f.Close()
			continue
		}
		buf := make([]byte, 64)
		n, _ := f.ReadAt(buf, 0)
		f.Close()
		switch got := string(buf[:n]); got {
		case "inside":
			inside++
		case secret:
			t.Fatalf("read the host secret after %d swaps", swaps.Load())
		default:
			t.Fatalf("read %q", got)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d swaps: %d reads of the inside file, %d refused", swaps.Load(), inside, failed)
	if inside == 0 || swaps.Load() == 0 {
		t.Errorf("the race was not exercised: %d inside reads, %d swaps", inside, swaps.Load())
	}
}

func TestOpeningSpecialFilesIsRefused(t *testing.T) {
	share, _ := layout(t)
	if err := unix.Mkfifo(filepath.Join(share, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := attach(t, newServer(t, share, Options{}))
	fifo := walk(t, root, "fifo")
	done := make(chan error, 1)
	go func() { _, _, err := fifo.Open(p9.ReadOnly); done <- err }()
	select {
	case err := <-done:
		wantErrno(t, "open fifo", err, linux.EOPNOTSUPP)
	case <-time.After(5 * time.Second):
		t.Fatal("open of a FIFO blocked the server")
	}
}
