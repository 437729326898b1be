package p9fs

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

// create makes name in dir and returns the new, open file (a create turns
// the client's fid into the new file, so it works on a clone).
func create(t *testing.T, dir p9.File, name string, flags p9.OpenFlags, perm p9.FileMode) p9.File {
	t.Helper()
	f := walk(t, dir)
	if _, _, _, err := f.Create(name, flags, perm, p9.NoUID, p9.NoGID); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return f
}

func TestCreateWriteReadRenameAndUnlinkReachTheHost(t *testing.T) {
	share, _ := layout(t)
	root := attach(t, newServer(t, share, Options{}))

	f := create(t, root, "a", p9.ReadWrite, 0o640)
	if n, err := f.WriteAt([]byte("hello, world"), 0); err != nil || n != 12 {
		t.Fatalf("write = %d, %v", n, err)
	}
	if b, _ := os.ReadFile(filepath.Join(share, "a")); string(b) != "hello, world" {
		t.Errorf("host file holds %q", b)
	}
	fi, err := os.Stat(filepath.Join(share, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("created with mode %v, want 0640 whatever the host umask", fi.Mode().Perm())
	}

	r := open(t, root, []string{"a"}, p9.ReadOnly)
	buf := make([]byte, 5)
	if n, err := r.ReadAt(buf, 7); err != nil || string(buf[:n]) != "world" {
		t.Errorf("read at 7 = %q, %v", buf[:n], err)
	}

	if _, err := root.Mkdir("sub", 0o755, p9.NoUID, p9.NoGID); err != nil {
		t.Fatal(err)
	}
	sub := walk(t, root, "sub")
	if err := root.RenameAt("a", sub, "b"); err != nil {
		t.Fatalf("renameat: %v", err)
	}
	if _, err := os.Stat(filepath.Join(share, "sub", "b")); err != nil {
		t.Errorf("after rename: %v", err)
	}
	// The open fid follows the file, not the name.
	if n, err := r.ReadAt(buf, 0); err != nil || string(buf[:n]) != "hello" {
		t.Errorf("read after rename = %q, %v", buf[:n], err)
	}
	// Trename: the library renames through the parent.
	b := walk(t, root, "sub", "b")
	if err := b.Rename(root, "c"); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if _, err := os.Stat(filepath.Join(share, "c")); err != nil {
		t.Errorf("after rename: %v", err)
	}

	if err := root.UnlinkAt("c", 0); err != nil {
		t.Fatalf("unlink: %v", err)
	}
	wantErrno(t, "unlink of a directory without AT_REMOVEDIR", root.UnlinkAt("sub", 0), linux.EISDIR)
	if err := root.UnlinkAt("sub", unix.AT_REMOVEDIR); err != nil {
		t.Fatalf("rmdir: %v", err)
	}
	if ents, _ := os.ReadDir(share); len(ents) != 0 {
		t.Errorf("share not empty after unlinks: %v", ents)
	}
	_, _, err = root.Walk([]string{"c"})
	wantErrno(t, "walk to an unlinked name", err, linux.ENOENT)
}

func TestSetAttrChangesModeOwnerSizeAndTimes(t *testing.T) {
	share, _ := layout(t)
	root := attach(t, newServer(t, share, Options{}))
	path := filepath.Join(share, "f")
	when := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	for _, tc := range []struct {
		name  string
		valid p9.SetAttrMask
		attr  p9.SetAttr
		check func(st *unix.Stat_t) error
	}{
		{"chmod", p9.SetAttrMask{Permissions: true}, p9.SetAttr{Permissions: 0o1600}, func(st *unix.Stat_t) error {
			if st.Mode&0o7777 != 0o1600 {
				return fmt.Errorf("mode %#o, want 01600", st.Mode&0o7777)
			}
			return nil
		}},
		{"chown", p9.SetAttrMask{UID: true, GID: true}, p9.SetAttr{UID: 1234, GID: 5678}, func(st *unix.Stat_t) error {
			if st.Uid != 1234 || st.Gid != 5678 {
				return fmt.Errorf("owner %d:%d, want 1234:5678", st.Uid, st.Gid)
			}
			return nil
		}},
		{"chgrp only", p9.SetAttrMask{GID: true}, p9.SetAttr{UID: 1, GID: 42}, func(st *unix.Stat_t) error {
			if st.Uid != 0 || st.Gid != 42 {
				return fmt.Errorf("owner %d:%d, want 0:42", st.Uid, st.Gid)
			}
			return nil
		}},
		{"truncate", p9.SetAttrMask{Size: true}, p9.SetAttr{Size: 3}, func(st *unix.Stat_t) error {
			if st.Size != 3 {
				return fmt.Errorf("size %d, want 3", st.Size)
			}
			return nil
		}},
		{"extend", p9.SetAttrMask{Size: true}, p9.SetAttr{Size: 1 << 20}, func(st *unix.Stat_t) error {
			if st.Size != 1<<20 {
				return fmt.Errorf("size %d, want 1 MiB", st.Size)
			}
			return nil
		}},
		{"set times", p9.SetAttrMask{ATime: true, MTime: true, ATimeNotSystemTime: true, MTimeNotSystemTime: true},
			p9.SetAttr{ATimeSeconds: uint64(when.Unix()), ATimeNanoSeconds: 7000, MTimeSeconds: uint64(when.Unix()) + 1},
			func(st *unix.Stat_t) error {
				if st.Atim.Sec != when.Unix() || st.Atim.Nsec != 7000 || st.Mtim.Sec != when.Unix()+1 {
					return fmt.Errorf("atime %v mtime %v", st.Atim, st.Mtim)
				}
				return nil
			}},
		{"mtime now", p9.SetAttrMask{MTime: true}, p9.SetAttr{}, func(st *unix.Stat_t) error {
			if d := time.Since(time.Unix(st.Mtim.Unix())); d < 0 || d > time.Minute {
				return fmt.Errorf("mtime %v is not now", time.Unix(st.Mtim.Unix()))
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte("0123456789"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(path, 0, 0); err != nil {
				t.Fatal(err)
			}
			f := walk(t, root, "f")
			if err := f.SetAttr(tc.valid, tc.attr); err != nil {
				t.Fatalf("setattr: %v", err)
			}
			var st unix.Stat_t
			if err := unix.Stat(path, &st); err != nil {
				t.Fatal(err)
			}
			if err := tc.check(&st); err != nil {
				t.Error(err)
			}
			// What the guest reads back is the host's view.
			_, _, attr, err := f.GetAttr(p9.AttrMaskAll)
			if err != nil {
				t.Fatal(err)
			}
			if uint32(attr.Mode) != st.Mode || uint32(attr.UID) != st.Uid || attr.Size != uint64(st.Size) || attr.MTimeSeconds != uint64(st.Mtim.Sec) {
				t.Errorf("getattr %+v disagrees with the host's %+v", attr, st)
			}
		})
	}
}

func TestSetAttrOfASymlinkChangesTheLinkOnly(t *testing.T) {
	share, outside := layout(t)
	target := filepath.Join(outside, "secret")
	if err := os.Symlink(target, filepath.Join(share, "ln")); err != nil {
		t.Fatal(err)
	}
	root := attach(t, newServer(t, share, Options{}))
	ln := walk(t, root, "ln")
	if err := ln.SetAttr(p9.SetAttrMask{UID: true, GID: true}, p9.SetAttr{UID: 77, GID: 88}); err != nil {
		t.Fatalf("lchown: %v", err)
	}
	if err := ln.SetAttr(p9.SetAttrMask{Permissions: true}, p9.SetAttr{Permissions: 0o777}); err == nil {
		t.Error("chmod of a symlink succeeded")
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(share, "ln"), &st); err != nil || st.Uid != 77 || st.Gid != 88 {
		t.Errorf("link owner %d:%d (%v), want 77:88", st.Uid, st.Gid, err)
	}
	if err := unix.Stat(target, &st); err != nil || st.Uid != 0 || st.Mode&0o777 != 0o644 {
		t.Errorf("outside file changed: uid %d mode %#o (%v)", st.Uid, st.Mode&0o777, err)
	}
}

func TestReaddirPagesThroughTwoThousandEntries(t *testing.T) {
	share, _ := layout(t)
	const n = 2000
	want := map[string]bool{".": true, "..": true}
	for i := range n {
		name := fmt.Sprintf("entry-with-a-longish-name-%04d", i)
		want[name] = true
		if err := os.WriteFile(filepath.Join(share, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(share, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	want["adir"] = true
	root := attach(t, newServer(t, share, Options{}))
	dir := open(t, root, nil, p9.ReadOnly)

	got := map[string]p9.Dirent{}
	var offset uint64
	calls := 0
	for {
		ents, err := dir.Readdir(offset, 4096)
		if err != nil {
			t.Fatalf("readdir at %d: %v", offset, err)
		}
		if len(ents) == 0 {
			break
		}
		calls++
		for _, e := range ents {
			if _, dup := got[e.Name]; dup {
				t.Fatalf("entry %q returned twice", e.Name)
			}
			got[e.Name] = e
		}
		offset = ents[len(ents)-1].Offset
	}
	if calls < 10 {
		t.Errorf("%d Treaddir calls: the listing was not paged", calls)
	}
	if len(got) != len(want) {
		var missing []string
		for name := range want {
			if _, ok := got[name]; !ok {
				missing = append(missing, name)
			}
		}
		sort.Strings(missing)
		t.Fatalf("got %d entries, want %d; missing %v", len(got), len(want), missing)
	}
	if e := got["adir"]; e.Type != p9.QIDType(unix.DT_DIR) || e.QID.Type != p9.TypeDir {
		t.Errorf("adir: type %d, QID type %v: want DT_DIR and a directory QID", e.Type, e.QID.Type)
	}
	rootQID, _, _, err := root.GetAttr(p9.AttrMaskAll)
	if err != nil {
		t.Fatal(err)
	}
	if got[".."].QID.Path != rootQID.Path {
		t.Errorf(".. at the root has QID path %d, want the root's %d (not the host parent)", got[".."].QID.Path, rootQID.Path)
	}
	// Starting again from 0 rewinds.
	if ents, err := dir.Readdir(0, 4096); err != nil || len(ents) == 0 {
		t.Errorf("readdir from 0 again: %d entries, %v", len(ents), err)
	}
}

func TestMkdirSymlinkReadlinkLinkAndMknodCreateWhatTheyName(t *testing.T) {
	share, _ := layout(t)
	root := attach(t, newServer(t, share, Options{}))
	if _, err := root.Mkdir("d", 0o750, p9.NoUID, 42); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if _, err := root.Symlink("../some/where", "s", p9.NoUID, p9.NoGID); err != nil {
		t.Fatalf("symlink: %v", err)
	}
	if got, err := walk(t, root, "s").Readlink(); err != nil || got != "../some/where" {
		t.Errorf("readlink = %q, %v", got, err)
	}
	create(t, root, "f", p9.WriteOnly, 0o600)
	if err := root.Link(walk(t, root, "f"), "f2"); err != nil {
		t.Fatalf("link: %v", err)
	}
	if _, err := root.Mknod("fifo", p9.ModeNamedPipe|0o640, 0, 0, p9.NoUID, p9.NoGID); err != nil {
		t.Fatalf("mknod fifo: %v", err)
	}
	if _, err := root.Mknod("reg", p9.ModeRegular|0o604, 0, 0, p9.NoUID, p9.NoGID); err != nil {
		t.Fatalf("mknod regular: %v", err)
	}
	for _, tc := range []struct {
		name string
		mode uint32
		gid  uint32
	}{
		{"d", unix.S_IFDIR | 0o750, 42},
		{"s", unix.S_IFLNK | 0o777, 0},
		{"f", unix.S_IFREG | 0o600, 0},
		{"fifo", unix.S_IFIFO | 0o640, 0},
		{"reg", unix.S_IFREG | 0o604, 0},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(share, tc.name), &st); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if st.Mode != tc.mode || st.Gid != tc.gid {
			t.Errorf("%s: mode %#o gid %d, want %#o gid %d", tc.name, st.Mode, st.Gid, tc.mode, tc.gid)
		}
	}
	var a, b unix.Stat_t
	unix.Stat(filepath.Join(share, "f"), &a)
	unix.Stat(filepath.Join(share, "f2"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("f2 is not a hard link of f: inodes %d, %d, %d links", a.Ino, b.Ino, a.Nlink)
	}
}

func TestMknodRefusesDeviceNodes(t *testing.T) {
	share, _ := layout(t)
	root := attach(t, newServer(t, share, Options{}))
	for _, mode := range []p9.FileMode{p9.ModeCharacterDevice | 0o666, p9.ModeBlockDevice | 0o660} {
		_, err := root.Mknod("dev", mode, 8, 0, p9.NoUID, p9.NoGID)
		wantErrno(t, fmt.Sprintf("mknod %#o", mode), err, linux.EPERM)
	}
	if _, err := os.Lstat(filepath.Join(share, "dev")); !os.IsNotExist(err) {
		t.Errorf("a device node was made: %v", err)
	}
}

func TestSetgidDirectoryPassesItsBitAndGroupToNewDirectories(t *testing.T) {
	share, _ := layout(t)
	parent := filepath.Join(share, "shared")
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(parent, 0, 99); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(parent, 0o2775); err != nil {
		t.Fatal(err)
	}
	root := attach(t, newServer(t, share, Options{}))
	if _, err := walk(t, root, "shared").Mkdir("child", 0o755, p9.NoUID, 99); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(parent, "child"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o2755 || st.Gid != 99 {
		t.Errorf("child mode %#o gid %d, want 02755 gid 99", st.Mode&0o7777, st.Gid)
	}
}

func TestFsyncAndStatfsReachTheHost(t *testing.T) {
	share, _ := layout(t)
	root := attach(t, newServer(t, share, Options{}))
	f := create(t, root, "f", p9.ReadWrite, 0o644)
	if _, err := f.WriteAt([]byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.FSync(); err != nil {
		t.Errorf("fsync: %v", err)
	}
	got, err := root.StatFS()
	if err != nil {
		t.Fatal(err)
	}
	var want unix.Statfs_t
	if err := unix.Statfs(share, &want); err != nil {
		t.Fatal(err)
	}
	if got.Type != uint32(want.Type) || got.BlockSize != uint32(want.Bsize) || got.Blocks != want.Blocks || got.NameLength != uint32(want.Namelen) {
		t.Errorf("statfs %+v, host says %+v", got, want)
	}
}

func TestReadOnlyShareRefusesEveryMutationWithEROFS(t *testing.T) {
	share, _ := layout(t)
	if err := os.WriteFile(filepath.Join(share, "f"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(share, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := attach(t, newServer(t, share, Options{ReadOnly: true}))
	f := walk(t, root, "f")
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"open for write", func() error { _, _, err := walk(t, root, "f").Open(p9.WriteOnly); return err }},
		{"open for read-write", func() error { _, _, err := walk(t, root, "f").Open(p9.ReadWrite); return err }},
		{"open with truncate", func() error { _, _, err := walk(t, root, "f").Open(p9.ReadOnly | dotlTrunc); return err }},
		{"create", func() error {
			_, _, _, err := walk(t, root).Create("n", p9.ReadWrite, 0o644, p9.NoUID, p9.NoGID)
			return err
		}},
		{"mkdir", func() error { _, err := root.Mkdir("n", 0o755, p9.NoUID, p9.NoGID); return err }},
		{"symlink", func() error { _, err := root.Symlink("t", "n", p9.NoUID, p9.NoGID); return err }},
		{"mknod", func() error { _, err := root.Mknod("n", p9.ModeNamedPipe|0o644, 0, 0, p9.NoUID, p9.NoGID); return err }},
		{"link", func() error { return root.Link(f, "n") }},
		{"renameat", func() error { return root.RenameAt("f", root, "n") }},
		{"unlinkat", func() error { return root.UnlinkAt("f", 0) }},
		{"rmdir", func() error { return root.UnlinkAt("d", unix.AT_REMOVEDIR) }},
		{"chmod", func() error { return f.SetAttr(p9.SetAttrMask{Permissions: true}, p9.SetAttr{Permissions: 0o777}) }},
		{"chown", func() error { return f.SetAttr(p9.SetAttrMask{UID: true}, p9.SetAttr{UID: 5}) }},
		{"truncate", func() error { return f.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{}) }},
		{"utimes", func() error { return f.SetAttr(p9.SetAttrMask{MTime: true}, p9.SetAttr{}) }},
	} {
		wantErrno(t, tc.name, tc.op(), linux.EROFS)
	}
	if b, _ := os.ReadFile(filepath.Join(share, "f")); string(b) != "keep" {
		t.Errorf("file now holds %q", b)
	}
	if ents, _ := os.ReadDir(share); len(ents) != 2 {
		t.Errorf("share changed: %v", ents)
	}
	// Reading still works.
	if got := readAll(t, open(t, root, []string{"f"}, p9.ReadOnly)); got != "keep" {
		t.Errorf("read %q", got)
	}
}

func TestClosingTheServerEndsSessionsAndReleasesEveryDescriptor(t *testing.T) {
	share, _ := layout(t)
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(share, fmt.Sprint(i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := openFds(t)
	srv, err := New(share, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cconn, sconn := net.Pipe()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sconn) }()
	c, err := p9.NewClient(cconn)
	if err != nil {
		t.Fatal(err)
	}
	root, err := c.Attach("")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		_, f, err := root.Walk([]string{fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.Open(p9.ReadOnly); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running after Close")
	}
	c.Close()
	if after := openFds(t); after != before {
		t.Errorf("%d descriptors open before, %d after", before, after)
	}
	if _, err := srv.NewSession(func([]byte) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("session on a closed server: %v, want ErrClosed", err)
	}
}

func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestCreateOfAnExistingFileOpensItUnchangedUnlessExclusive(t *testing.T) {
	share, _ := layout(t)
	path := filepath.Join(share, "f")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 7, 7); err != nil {
		t.Fatal(err)
	}
	root := attach(t, newServer(t, share, Options{}))
	_, _, _, err := walk(t, root).Create("f", p9.ReadWrite|dotlExcl, 0o644, 1, 1)
	wantErrno(t, "exclusive create of an existing file", err, linux.EEXIST)

	f := walk(t, root)
	if _, _, _, err := f.Create("f", p9.ReadWrite, 0o644, 1, 1); err != nil {
		t.Fatalf("create of an existing file: %v", err)
	}
	if got := readAll(t, f); got != "old" {
		t.Errorf("read %q through the opened file", got)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 7 || st.Gid != 7 || st.Mode&0o7777 != 0o600 {
		t.Errorf("existing file changed to %d:%d %#o", st.Uid, st.Gid, st.Mode&0o7777)
	}
	if err := os.Mkdir(filepath.Join(share, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = walk(t, root).Create("d", p9.ReadOnly, 0o644, p9.NoUID, p9.NoGID)
	wantErrno(t, "create over a directory", err, linux.EEXIST)
}
