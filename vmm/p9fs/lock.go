package p9fs

import (
	"errors"
	"fmt"
	"math"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

// Lock implements p9.File with host OFD record locks on a descriptor of
// the fid's own, so each fid is one lock owner (Linux's v9fs gives every
// open file its own fid, and sends both flock and fcntl locks as Tlock).
//
// The server never waits for a lock: a conflict is answered
// LockStatusBlocked, which v9fs answers by retrying after a pause for a
// blocking request and by failing with EAGAIN for a non-blocking one. So a
// waiting lock holds no server goroutine and never delays a Tflush.
//
// The lock descriptor is opened read-write where the host allows it, so
// that write locks work on a fid the guest opened read-only (flock does
// not care about the open mode). On a ReadOnly share it is read-only, and
// a write lock fails with EBADF as fcntl would.
func (f *file) Lock(_ int, typ p9.LockType, _ p9.LockFlags, start, length uint64, _ string) (p9.LockStatus, error) {
	var lt int16
	switch typ {
	case p9.ReadLock:
		lt = unix.F_RDLCK
	case p9.WriteLock:
		lt = unix.F_WRLCK
	case p9.Unlock:
		lt = unix.F_UNLCK
	default:
		return p9.LockStatusError, fmt.Errorf("lock type %d: %w", typ, linux.EINVAL)
	}
	if start > math.MaxInt64 {
		return p9.LockStatusError, fmt.Errorf("lock at %d: %w", start, linux.EINVAL)
	}
	l := int64(length)
	if length > math.MaxInt64-start {
		l = 0 // to the end of the file, and beyond
	}
	fd, err := f.lockFd()
	if err != nil {
		return p9.LockStatusError, err
	}
	lk := unix.Flock_t{Type: lt, Whence: 0, Start: int64(start), Len: l}
	err = retry(func() error { return unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk) })
	switch {
	case err == nil:
		return p9.LockStatusOK, nil
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EACCES):
		return p9.LockStatusBlocked, nil
	}
	return p9.LockStatusError, sysErr("lock", err)
}

// lockFd returns the fid's lock descriptor, opening it the first time.
func (f *file) lockFd() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lock >= 0 {
		return f.lock, nil
	}
	fd := -1
	var err error
	if !f.srv.opts.ReadOnly && f.mode == unix.S_IFREG {
		// Refused on a read-only host mount, or for a running binary.
		fd, err = f.reopen(unix.O_RDWR)
	}
	if fd < 0 {
		if fd, err = f.reopen(unix.O_RDONLY); err != nil {
			return -1, fmt.Errorf("lock: %w", err)
		}
	}
	f.lock = fd
	return fd, nil
}
