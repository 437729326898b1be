package p9fs

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

// Every operation here changes the share, so each starts with writable,
// and every name is resolved by an *at call relative to the directory's
// descriptor without following a final symlink.

func (f *file) writable(op string) error {
	if f.srv.opts.ReadOnly {
		return fmt.Errorf("%s: %w", op, linux.EROFS)
	}
	return nil
}

// checkName accepts one path component.
func checkName(op, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%s %q: %w", op, name, linux.EINVAL)
	}
	return nil
}

// owner is the uid and gid to give a new file: the request's, else the
// fid's attach uid; -1 leaves the server's.
func (f *file) owner(uid p9.UID, gid p9.GID) (int, int) {
	u, g := -1, -1
	if !uid.Ok() {
		uid = f.uid
	}
	if uid.Ok() {
		u = int(uid)
	}
	if gid.Ok() {
		g = int(gid)
	}
	return u, g
}

// SetAttr implements p9.File. Owner first, since a chown may clear the
// setuid bits a chmod in the same request sets; times last, since a
// truncate moves mtime. A bare ctime update has no host call of its own
// and is left to the changes that come with it.
func (f *file) SetAttr(valid p9.SetAttrMask, attr p9.SetAttr) error {
	if !(valid.Permissions || valid.UID || valid.GID || valid.Size || valid.ATime || valid.MTime) {
		return nil
	}
	if err := f.writable("setattr"); err != nil {
		return err
	}
	if valid.UID || valid.GID {
		u, g := -1, -1
		if valid.UID {
			u = int(attr.UID)
		}
		if valid.GID {
			g = int(attr.GID)
		}
		if err := unix.Fchownat(f.fd, "", u, g, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return sysErr("chown", err)
		}
	}
	if valid.Size {
		switch {
		case f.mode == unix.S_IFDIR:
			return fmt.Errorf("truncate: %w", linux.EISDIR)
		case f.mode != unix.S_IFREG:
			return fmt.Errorf("truncate: %w", linux.EINVAL)
		case attr.Size > math.MaxInt64:
			return fmt.Errorf("truncate to %d: %w", attr.Size, linux.EFBIG)
		}
		if err := retry(func() error { return unix.Truncate(procPath(f.fd), int64(attr.Size)) }); err != nil {
			return sysErr("truncate", err)
		}
	}
	if valid.Permissions {
		mode := uint32(attr.Permissions & 0o7777)
		if !valid.Size && attr.Size&carriedModeFlag != 0 {
			mode |= uint32(attr.Size & carriedModeBits)
		}
		if err := f.chmod(mode); err != nil {
			return err
		}
	}
	if valid.ATime || valid.MTime {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if valid.ATime {
			ts[0] = timespec(valid.ATimeNotSystemTime, attr.ATimeSeconds, attr.ATimeNanoSeconds)
		}
		if valid.MTime {
			ts[1] = timespec(valid.MTimeNotSystemTime, attr.MTimeSeconds, attr.MTimeNanoSeconds)
		}
		if err := unix.UtimesNanoAt(f.fd, "", ts, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return sysErr("utimes", err)
		}
	}
	return nil
}

func timespec(given bool, sec, nsec uint64) unix.Timespec {
	if !given {
		return unix.Timespec{Nsec: unix.UTIME_NOW}
	}
	return unix.Timespec{Sec: int64(sec), Nsec: int64(nsec)}
}

// chmod sets the mode through the procfs link (there is no fchmod for an
// O_PATH descriptor); the kernel refuses it for a symlink.
func (f *file) chmod(mode uint32) error {
	if err := unix.Fchmodat(unix.AT_FDCWD, procPath(f.fd), mode, 0); err != nil {
		return sysErr("chmod", err)
	}
	return nil
}

// Create implements p9.File. The new file gets the owner and the exact
// mode asked for: the guest already applied its umask and the host's must
// not apply too. If the name exists (a guest with a stale negative dentry
// can ask) and the guest did not ask for O_EXCL, the existing file is
// opened instead, as open(2) would, and left as it is.
func (f *file) Create(name string, flags p9.OpenFlags, perm p9.FileMode, uid p9.UID, gid p9.GID) (p9.File, p9.QID, uint32, error) {
	nf, err := f.create(name, flags, perm, uid, gid)
	if err != nil {
		return nil, p9.QID{}, 0, err
	}
	return nf, nf.qid(), 0, nil
}

func (f *file) create(name string, flags p9.OpenFlags, perm p9.FileMode, uid p9.UID, gid p9.GID) (*file, error) {
	if err := f.writable("create"); err != nil {
		return nil, err
	}
	if err := checkName("create", name); err != nil {
		return nil, err
	}
	h, err := hostOpenFlags(flags, false)
	if err != nil {
		return nil, err
	}
	mode := uint32(perm & 0o7777)
	var fd int
	err = retry(func() (err error) {
		fd, err = unix.Openat(f.fd, name, h|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, mode)
		return err
	})
	if errors.Is(err, unix.EEXIST) && flags&dotlExcl == 0 {
		return f.openExisting(name, flags)
	}
	if err != nil {
		return nil, sysErr("create "+name, err)
	}
	undo := func(err error) (*file, error) {
		unix.Close(fd)
		unix.Unlinkat(f.fd, name, 0)
		return nil, err
	}
	if u, g := f.owner(uid, gid); u != -1 || g != -1 {
		if err := unix.Fchown(fd, u, g); err != nil {
			return undo(sysErr("create "+name+": chown", err))
		}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return undo(sysErr("create "+name+": chmod", err))
	}
	pathFd, err := unix.Open(procPath(fd), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return undo(sysErr("create "+name+": reopen", err))
	}
	nf, err := f.derive(pathFd)
	if err != nil {
		return undo(err)
	}
	nf.io = fd
	return nf, nil
}

// openExisting opens the regular file name for Create, through an O_PATH
// descriptor so that nothing but a regular file is ever opened.
func (f *file) openExisting(name string, flags p9.OpenFlags) (*file, error) {
	fd, err := unix.Openat(f.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, sysErr("create "+name, err)
	}
	nf, err := f.derive(fd)
	if err != nil {
		return nil, err
	}
	if nf.mode != unix.S_IFREG {
		nf.Close()
		return nil, fmt.Errorf("create %s: exists and is not a regular file: %w", name, linux.EEXIST)
	}
	if _, _, err := nf.Open(flags); err != nil {
		nf.Close()
		return nil, err
	}
	return nf, nil
}

// Mkdir implements p9.File. A setgid bit the host inherited from a setgid
// parent is kept: the library strips setgid from the requested mode.
func (f *file) Mkdir(name string, perm p9.FileMode, uid p9.UID, gid p9.GID) (p9.QID, error) {
	if err := f.writable("mkdir"); err != nil {
		return p9.QID{}, err
	}
	if err := checkName("mkdir", name); err != nil {
		return p9.QID{}, err
	}
	mode := uint32(perm & 0o7777)
	if err := unix.Mkdirat(f.fd, name, mode); err != nil {
		return p9.QID{}, sysErr("mkdir "+name, err)
	}
	qid, err := f.adopt(name, unix.O_DIRECTORY, uid, gid, func(st *unix.Stat_t) uint32 {
		return mode | st.Mode&unix.S_ISGID
	})
	if err != nil {
		unix.Unlinkat(f.fd, name, unix.AT_REMOVEDIR)
		return p9.QID{}, err
	}
	return qid, nil
}

// Symlink implements p9.File. The target is stored as given: it is only
// ever resolved by the guest.
func (f *file) Symlink(target, name string, uid p9.UID, gid p9.GID) (p9.QID, error) {
	if err := f.writable("symlink"); err != nil {
		return p9.QID{}, err
	}
	if err := checkName("symlink", name); err != nil {
		return p9.QID{}, err
	}
	if err := unix.Symlinkat(target, f.fd, name); err != nil {
		return p9.QID{}, sysErr("symlink "+name, err)
	}
	qid, err := f.adopt(name, 0, uid, gid, nil)
	if err != nil {
		unix.Unlinkat(f.fd, name, 0)
		return p9.QID{}, err
	}
	return qid, nil
}

// Mknod implements p9.File for regular files, FIFOs and sockets. Device
// nodes are refused with EPERM: the guest makes its own device nodes
// work without them, and one in the share would be a host device for
// anything on the host that opens it.
func (f *file) Mknod(name string, mode p9.FileMode, _, _ uint32, uid p9.UID, gid p9.GID) (p9.QID, error) {
	if err := f.writable("mknod"); err != nil {
		return p9.QID{}, err
	}
	if err := checkName("mknod", name); err != nil {
		return p9.QID{}, err
	}
	typ := uint32(mode) & unix.S_IFMT
	switch typ {
	case 0:
		typ = unix.S_IFREG
	case unix.S_IFREG, unix.S_IFIFO, unix.S_IFSOCK:
	case unix.S_IFCHR, unix.S_IFBLK:
		return p9.QID{}, fmt.Errorf("mknod %s: device nodes: %w", name, linux.EPERM)
	default:
		return p9.QID{}, fmt.Errorf("mknod %s: type %#o: %w", name, typ, linux.EINVAL)
	}
	perm := uint32(mode) & 0o7777
	if err := unix.Mknodat(f.fd, name, typ|perm, 0); err != nil {
		return p9.QID{}, sysErr("mknod "+name, err)
	}
	qid, err := f.adopt(name, 0, uid, gid, func(*unix.Stat_t) uint32 { return perm })
	if err != nil {
		unix.Unlinkat(f.fd, name, 0)
		return p9.QID{}, err
	}
	return qid, nil
}

// adopt gives the entry just made under name its owner and, when mode is
// not nil, its exact mode, and returns its QID. It works on a descriptor
// of the entry, so whatever name points to by then, only a file inside
// the share is touched.
func (f *file) adopt(name string, flags int, uid p9.UID, gid p9.GID, mode func(*unix.Stat_t) uint32) (p9.QID, error) {
	fd, err := unix.Openat(f.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return p9.QID{}, sysErr("open new "+name, err)
	}
	nf, err := f.derive(fd)
	if err != nil {
		return p9.QID{}, err
	}
	defer nf.Close()
	// The mode is worked out before the chown, which may clear what the
	// host set at creation (setgid inherited from the parent).
	var st unix.Stat_t
	if err := fstat(nf.fd, &st); err != nil {
		return p9.QID{}, sysErr("stat new "+name, err)
	}
	if u, g := f.owner(uid, gid); u != -1 || g != -1 {
		if err := unix.Fchownat(nf.fd, "", u, g, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return p9.QID{}, sysErr("chown new "+name, err)
		}
	}
	if mode != nil {
		if err := nf.chmod(mode(&st)); err != nil {
			return p9.QID{}, err
		}
	}
	return nf.qid(), nil
}

// Link implements p9.File: a new name in this directory for the inode
// target's descriptor holds, which is inside the share by construction
// (for a symlink, the link itself, never its target). linkat with
// AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, which the root server has.
func (f *file) Link(target p9.File, name string) error {
	if err := f.writable("link"); err != nil {
		return err
	}
	if err := checkName("link", name); err != nil {
		return err
	}
	t, ok := target.(*file)
	if !ok || t.srv != f.srv {
		return fmt.Errorf("link %s: target from another share: %w", name, linux.EXDEV)
	}
	if err := unix.Linkat(t.fd, "", f.fd, name, unix.AT_EMPTY_PATH); err != nil {
		return sysErr("link "+name, err)
	}
	return nil
}

// RenameAt implements p9.File; both directories are descriptors.
func (f *file) RenameAt(oldName string, newDir p9.File, newName string) error {
	if err := f.writable("rename"); err != nil {
		return err
	}
	if err := checkName("rename", oldName); err != nil {
		return err
	}
	if err := checkName("rename", newName); err != nil {
		return err
	}
	nd, ok := newDir.(*file)
	if !ok || nd.srv != f.srv {
		return fmt.Errorf("rename %s: target directory from another share: %w", oldName, linux.EXDEV)
	}
	if err := unix.Renameat(f.fd, oldName, nd.fd, newName); err != nil {
		return sysErr("rename "+oldName, err)
	}
	return nil
}

// Rename implements p9.File for the client side only: the library's
// server turns Trename into RenameAt on the parent and never calls it.
// A descriptor has no name to rename by, so it is not supported.
func (f *file) Rename(p9.File, string) error {
	return fmt.Errorf("rename by fid: %w", linux.EOPNOTSUPP)
}

// UnlinkAt implements p9.File; AT_REMOVEDIR is the only flag.
func (f *file) UnlinkAt(name string, flags uint32) error {
	if err := f.writable("unlink"); err != nil {
		return err
	}
	if err := checkName("unlink", name); err != nil {
		return err
	}
	if flags&^unix.AT_REMOVEDIR != 0 {
		return fmt.Errorf("unlink %s: flags %#x: %w", name, flags, linux.EINVAL)
	}
	if err := unix.Unlinkat(f.fd, name, int(flags)); err != nil {
		return sysErr("unlink "+name, err)
	}
	return nil
}
