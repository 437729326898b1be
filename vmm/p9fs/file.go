package p9fs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

// file is what one fid names: an O_PATH descriptor, never used for I/O,
// and once opened a second descriptor that is.
type file struct {
	srv *Server
	// fd is the O_PATH|O_NOFOLLOW descriptor; for a symlink it is the
	// link itself.
	fd int
	// dev, ino and mode (the S_IFMT bits) cannot change for fd's life.
	dev, ino uint64
	mode     uint32
	// uid is the uid the guest attached with: the owner of what is
	// created through this file when the request names none.
	uid p9.UID
	// set is the session's set of open files (nil for direct callers).
	set *fileSet

	// mu guards io and lock, and serialises Readdir's seek and read.
	mu sync.Mutex
	// io is the descriptor Open made, -1 before.
	io int
	// lock is the descriptor whose OFD locks are this fid's, -1 before
	// the first Lock.
	lock int
}

var _ p9.File = (*file)(nil)

// attachRoot returns a new file for the share's root, one of set.
func (s *Server) attachRoot(uid p9.UID, set *fileSet) (p9.File, error) {
	fd, err := dupFd(s.rootFd)
	if err != nil {
		return nil, sysErr("attach", err)
	}
	f, err := s.newFile(fd, uid, set)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// newFile takes ownership of the O_PATH descriptor fd.
func (s *Server) newFile(fd int, uid p9.UID, set *fileSet) (*file, error) {
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, sysErr("stat", err)
	}
	f := &file{srv: s, fd: fd, dev: st.Dev, ino: st.Ino, mode: st.Mode & unix.S_IFMT, uid: uid, set: set, io: -1, lock: -1}
	set.add(f)
	return f, nil
}

// derive makes a file of fd with f's attach uid and session.
func (f *file) derive(fd int) (*file, error) { return f.srv.newFile(fd, f.uid, f.set) }

func (f *file) clone() (*file, error) {
	fd, err := dupFd(f.fd)
	if err != nil {
		return nil, sysErr("clone", err)
	}
	nf := &file{srv: f.srv, fd: fd, dev: f.dev, ino: f.ino, mode: f.mode, uid: f.uid, set: f.set, io: -1, lock: -1}
	f.set.add(nf)
	return nf, nil
}

func (f *file) qid() p9.QID {
	return p9.QID{Type: qidType(f.mode), Path: f.srv.qidPath(f.dev, f.ino)}
}

func qidType(mode uint32) p9.QIDType {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return p9.TypeDir
	case unix.S_IFLNK:
		return p9.TypeSymlink
	}
	return p9.TypeRegular
}

// Walk implements p9.File. Each name is one step, opened relative to the
// previous step's descriptor without following symlinks.
func (f *file) Walk(names []string) ([]p9.QID, p9.File, error) {
	qids, nf, err := f.walk(names)
	if err != nil {
		return nil, nil, err
	}
	return qids, nf, nil
}

func (f *file) walk(names []string) ([]p9.QID, *file, error) {
	cur, err := f.clone()
	if err != nil {
		return nil, nil, err
	}
	qids := make([]p9.QID, 0, len(names))
	for _, name := range names {
		next, err := cur.step(name)
		cur.Close()
		if err != nil {
			return nil, nil, err
		}
		cur = next
		qids = append(qids, cur.qid())
	}
	return qids, cur, nil
}

// step walks one name. The library refuses "." and ".." and names with a
// slash before a Walk is called; they are handled here too, so the file
// is confined whoever calls it.
func (f *file) step(name string) (*file, error) {
	switch {
	case name == "" || strings.ContainsAny(name, "/\x00"):
		return nil, fmt.Errorf("walk %q: %w", name, linux.EINVAL)
	case name == "." || name == "..":
		if f.mode != unix.S_IFDIR {
			return nil, fmt.Errorf("walk %q: %w", name, linux.ENOTDIR)
		}
		if name == "." || f.srv.isRoot(f.dev, f.ino) {
			return f.clone()
		}
		return f.parent()
	}
	fd, err := unix.Openat(f.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, sysErr("walk "+name, err)
	}
	return f.derive(fd)
}

// parent is "..", checked to be the root or beneath it: nothing the
// guest can do moves a directory out of the share, but the host can.
func (f *file) parent() (*file, error) {
	fd, err := unix.Openat(f.fd, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, sysErr("walk ..", err)
	}
	p, err := f.derive(fd)
	if err != nil {
		return nil, err
	}
	if err := f.srv.beneath(p); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// maxDepth bounds beneath's climb.
const maxDepth = 4096

// beneath climbs from dir towards the host's root and fails unless it
// meets the share's root on the way.
func (s *Server) beneath(dir *file) error {
	fd, err := dupFd(dir.fd)
	if err != nil {
		return sysErr("walk ..", err)
	}
	dev, ino := dir.dev, dir.ino
	for range maxDepth {
		if s.isRoot(dev, ino) {
			unix.Close(fd)
			return nil
		}
		up, err := unix.Openat(fd, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return sysErr("walk ..", err)
		}
		fd = up
		var st unix.Stat_t
		if err := fstat(fd, &st); err != nil {
			unix.Close(fd)
			return sysErr("walk ..", err)
		}
		if st.Dev == dev && st.Ino == ino {
			// The host's "/" is its own parent: outside the share.
			unix.Close(fd)
			return fmt.Errorf("walk ..: directory is outside the share: %w", linux.ENOENT)
		}
		dev, ino = st.Dev, st.Ino
	}
	unix.Close(fd)
	return fmt.Errorf("walk ..: more than %d levels: %w", maxDepth, linux.ELOOP)
}

// WalkGetAttr implements p9.File.
func (f *file) WalkGetAttr(names []string) ([]p9.QID, p9.File, p9.AttrMask, p9.Attr, error) {
	qids, nf, err := f.walk(names)
	if err != nil {
		return nil, nil, p9.AttrMask{}, p9.Attr{}, err
	}
	_, valid, attr, err := nf.GetAttr(p9.AttrMaskAll)
	if err != nil {
		nf.Close()
		return nil, nil, p9.AttrMask{}, p9.Attr{}, err
	}
	return qids, nf, valid, attr, nil
}

// GetAttr implements p9.File; it always returns the basic set, whatever
// was asked (9P2000.L allows more).
func (f *file) GetAttr(p9.AttrMask) (p9.QID, p9.AttrMask, p9.Attr, error) {
	var st unix.Stat_t
	if err := fstat(f.fd, &st); err != nil {
		return p9.QID{}, p9.AttrMask{}, p9.Attr{}, sysErr("getattr", err)
	}
	valid := p9.AttrMask{Mode: true, NLink: true, UID: true, GID: true, RDev: true,
		ATime: true, MTime: true, CTime: true, INo: true, Size: true, Blocks: true}
	attr := p9.Attr{
		Mode:             p9.FileMode(st.Mode),
		UID:              p9.UID(st.Uid),
		GID:              p9.GID(st.Gid),
		NLink:            p9.NLink(st.Nlink),
		RDev:             p9.Dev(st.Rdev),
		Size:             uint64(st.Size),
		BlockSize:        uint64(st.Blksize),
		Blocks:           uint64(st.Blocks),
		ATimeSeconds:     uint64(st.Atim.Sec),
		ATimeNanoSeconds: uint64(st.Atim.Nsec),
		MTimeSeconds:     uint64(st.Mtim.Sec),
		MTimeNanoSeconds: uint64(st.Mtim.Nsec),
		CTimeSeconds:     uint64(st.Ctim.Sec),
		CTimeNanoSeconds: uint64(st.Ctim.Nsec),
	}
	return f.qid(), valid, attr, nil
}

// StatFS implements p9.File.
func (f *file) StatFS() (p9.FSStat, error) {
	var s unix.Statfs_t
	if err := unix.Fstatfs(f.fd, &s); err != nil {
		return p9.FSStat{}, sysErr("statfs", err)
	}
	return p9.FSStat{
		Type:            uint32(s.Type),
		BlockSize:       uint32(s.Bsize),
		Blocks:          s.Blocks,
		BlocksFree:      s.Bfree,
		BlocksAvailable: s.Bavail,
		Files:           s.Files,
		FilesFree:       s.Ffree,
		FSID:            uint64(uint32(s.Fsid.Val[0])) | uint64(uint32(s.Fsid.Val[1]))<<32,
		NameLength:      uint32(s.Namelen),
	}, nil
}

// 9P2000.L open flags (Linux's include/net/9p/9p.h) the server honours;
// the others (create, nofollow, directory, ...) are the server's to
// decide, and direct I/O would only demand aligned buffers of the host.
const (
	dotlAccMode = 0o3
	dotlExcl    = 0o200
	dotlTrunc   = 0o1000
	dotlAppend  = 0o2000
	dotlDsync   = 0o10000
	dotlNoatime = 0o1000000
	dotlSync    = 0o4000000
)

// hostOpenFlags maps a Tlopen/Tlcreate's flags to open(2)'s.
func hostOpenFlags(flags p9.OpenFlags, readOnly bool) (int, error) {
	var h int
	switch flags & dotlAccMode {
	case 0:
		h = unix.O_RDONLY
	case 1:
		h = unix.O_WRONLY
	case 2:
		h = unix.O_RDWR
	default:
		return 0, fmt.Errorf("open flags %#x: %w", uint32(flags), linux.EINVAL)
	}
	if readOnly && (h != unix.O_RDONLY || flags&dotlTrunc != 0) {
		return 0, fmt.Errorf("open for writing: %w", linux.EROFS)
	}
	for _, m := range []struct {
		dotl p9.OpenFlags
		host int
	}{{dotlTrunc, unix.O_TRUNC}, {dotlAppend, unix.O_APPEND}, {dotlDsync, unix.O_DSYNC},
		{dotlNoatime, unix.O_NOATIME}, {dotlSync, unix.O_SYNC}} {
		if flags&m.dotl != 0 {
			h |= m.host
		}
	}
	return h, nil
}

// Open implements p9.File.
func (f *file) Open(flags p9.OpenFlags) (p9.QID, uint32, error) {
	h, err := hostOpenFlags(flags, f.srv.opts.ReadOnly)
	if err != nil {
		return p9.QID{}, 0, err
	}
	if f.mode == unix.S_IFDIR && h&(unix.O_WRONLY|unix.O_RDWR|unix.O_TRUNC) != 0 {
		return p9.QID{}, 0, fmt.Errorf("open directory for writing: %w", linux.EISDIR)
	}
	fd, err := f.reopen(h)
	if err != nil {
		return p9.QID{}, 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.io >= 0 {
		unix.Close(fd)
		return p9.QID{}, 0, fmt.Errorf("open: %w", linux.EBUSY)
	}
	f.io = fd
	return f.qid(), 0, nil
}

// reopen opens the file for I/O through the procfs link of its O_PATH
// descriptor, which names the inode, not a path that could have changed.
// Only regular files and directories are opened: a symlink's descriptor
// must never be, and the guest kernel handles FIFOs, sockets and device
// nodes itself, so opening them here could only block the server or reach
// a host device.
func (f *file) reopen(flags int) (int, error) {
	switch f.mode {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		flags |= unix.O_DIRECTORY
	case unix.S_IFLNK:
		return -1, fmt.Errorf("open symlink: %w", linux.ELOOP)
	default:
		return -1, fmt.Errorf("open special file (mode %#o): %w", f.mode, linux.EOPNOTSUPP)
	}
	var fd int
	err := retry(func() (err error) {
		fd, err = unix.Open(procPath(f.fd), flags|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		return err
	})
	if err != nil {
		return -1, sysErr("open", err)
	}
	return fd, nil
}

func (f *file) ioFd() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.io < 0 {
		return -1, fmt.Errorf("file not open: %w", linux.EBADF)
	}
	return f.io, nil
}

// ReadAt implements p9.File.
func (f *file) ReadAt(p []byte, offset int64) (int, error) {
	fd, err := f.ioFd()
	if err != nil {
		return 0, err
	}
	var n int
	if err := retry(func() (err error) { n, err = unix.Pread(fd, p, offset); return err }); err != nil {
		return 0, sysErr("read", err)
	}
	return n, nil
}

// WriteAt implements p9.File.
func (f *file) WriteAt(p []byte, offset int64) (int, error) {
	if f.srv.opts.ReadOnly {
		return 0, fmt.Errorf("write: %w", linux.EROFS)
	}
	fd, err := f.ioFd()
	if err != nil {
		return 0, err
	}
	var n int
	if err := retry(func() (err error) { n, err = unix.Pwrite(fd, p, offset); return err }); err != nil {
		return 0, sysErr("write", err)
	}
	return n, nil
}

// FSync implements p9.File.
func (f *file) FSync() error {
	fd, err := f.ioFd()
	if err != nil {
		return err
	}
	if err := retry(func() error { return unix.Fsync(fd) }); err != nil {
		return sysErr("fsync", err)
	}
	return nil
}

// Readdir implements p9.File. Offsets are the host's getdents cookies, so
// a guest paging through a large or changing directory resumes exactly
// where the previous Treaddir stopped. count is the reply's byte budget;
// the library trims what does not fit, and the guest continues from the
// last entry it got.
func (f *file) Readdir(offset uint64, count uint32) (p9.Dirents, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.io < 0 {
		return nil, fmt.Errorf("readdir: %w", linux.EBADF)
	}
	if offset > math.MaxInt64 {
		return nil, nil
	}
	if _, err := unix.Seek(f.io, int64(offset), io.SeekStart); err != nil {
		return nil, sysErr("readdir seek", err)
	}
	// getdents needs room for at least one entry.
	buf := make([]byte, min(max(int(count), 4096), 1<<20))
	var n int
	if err := retry(func() (err error) { n, err = unix.Getdents(f.io, buf); return err }); err != nil {
		return nil, sysErr("readdir", err)
	}
	return f.dirents(buf[:n]), nil
}

// dirents decodes linux_dirent64 records: ino[8] off[8] reclen[2] type[1]
// name, NUL-terminated.
func (f *file) dirents(b []byte) p9.Dirents {
	var out p9.Dirents
	atRoot := f.srv.isRoot(f.dev, f.ino)
	for len(b) >= 19 {
		reclen := int(binary.LittleEndian.Uint16(b[16:]))
		if reclen < 19 || reclen > len(b) {
			break
		}
		ino := binary.LittleEndian.Uint64(b)
		off := binary.LittleEndian.Uint64(b[8:])
		dtype := b[18]
		name := b[19:reclen]
		if i := strings.IndexByte(string(name), 0); i >= 0 {
			name = name[:i]
		}
		b = b[reclen:]
		path := f.srv.qidPath(f.dev, ino)
		if atRoot && string(name) == ".." {
			// Not the host's parent of the share.
			path = f.srv.qidPath(f.srv.rootDev, f.srv.rootIno)
		}
		out = append(out, p9.Dirent{
			QID:    p9.QID{Type: dtQIDType(dtype), Path: path},
			Offset: off,
			// Linux's v9fs passes this byte to dir_emit as the
			// entry's DT_ type, so it carries the DT_ value, not a
			// QID type.
			Type: p9.QIDType(dtype),
			Name: string(name),
		})
	}
	return out
}

func dtQIDType(dt byte) p9.QIDType {
	switch dt {
	case unix.DT_DIR:
		return p9.TypeDir
	case unix.DT_LNK:
		return p9.TypeSymlink
	}
	return p9.TypeRegular
}

// Readlink implements p9.File.
func (f *file) Readlink() (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(f.fd, "", buf)
		if err != nil {
			return "", sysErr("readlink", err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
		if size >= 1<<16 {
			return "", fmt.Errorf("readlink: target longer than %d bytes: %w", size, linux.ENAMETOOLONG)
		}
	}
}

// GetXattr implements p9.File: xattrs are not supported (the session
// answers Txattrwalk itself, so this is only for direct callers).
func (f *file) GetXattr(string) ([]byte, error) {
	return nil, fmt.Errorf("getxattr: %w", linux.EOPNOTSUPP)
}

// ListXattrs implements p9.File: xattrs are not supported.
func (f *file) ListXattrs() ([]string, error) {
	return nil, fmt.Errorf("listxattr: %w", linux.EOPNOTSUPP)
}

// SetXattr implements p9.File: xattrs are not supported.
func (f *file) SetXattr(string, []byte, p9.XattrFlags) error {
	return f.xattrWrite("setxattr")
}

// RemoveXattr implements p9.File: xattrs are not supported.
func (f *file) RemoveXattr(string) error {
	return f.xattrWrite("removexattr")
}

func (f *file) xattrWrite(op string) error {
	if f.srv.opts.ReadOnly {
		return fmt.Errorf("%s: %w", op, linux.EROFS)
	}
	return fmt.Errorf("%s: %w", op, linux.EOPNOTSUPP)
}

// Renamed implements p9.File. Nothing to do: a file is its descriptor,
// which a rename does not change.
func (f *file) Renamed(p9.File, string) {}

// Close implements p9.File; closing the lock descriptor drops the fid's
// locks.
func (f *file) Close() error {
	f.set.remove(f)
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, fd := range []*int{&f.lock, &f.io, &f.fd} {
		if *fd >= 0 {
			if err := unix.Close(*fd); err != nil {
				errs = append(errs, err)
			}
			*fd = -1
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close file: %w", err)
	}
	return nil
}

func fstat(fd int, st *unix.Stat_t) error {
	return unix.Fstatat(fd, "", st, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
}

func dupFd(fd int) (int, error) {
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
}

func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// retry repeats a system call interrupted by a signal.
func retry(call func() error) error {
	for {
		if err := call(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// sysErr wraps a host error with its operation as the Linux errno the
// library puts on the wire. The library would map a bare syscall error
// through os.ErrPermission and friends, turning EPERM into EACCES.
func sysErr(op string, err error) error {
	var se unix.Errno
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %w", op, linux.Errno(se))
	}
	var le linux.Errno
	if errors.As(err, &le) {
		return fmt.Errorf("%s: %w", op, le)
	}
	return fmt.Errorf("%s: %v: %w", op, err, linux.EIO)
}
