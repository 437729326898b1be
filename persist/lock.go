package persist

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockFile is flocked by every writer of a sandbox's directory.
const lockFile = ".lock"

// lockDir takes an exclusive flock on dir's lock file. It serializes the
// writers of one sandbox across goroutines, Store values and processes: the
// shim saving while a `delete` started by containerd removes. With create,
// dir is made first; without it a missing dir gives fs.ErrNotExist.
// Close the returned file to unlock. It blocks until the lock is free;
// writers hold it only for one Save or Delete.
func lockDir(dir string, create bool) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	for {
		if create {
			if err := mkdirDurable(dir); err != nil {
				return nil, err
			}
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if create && errors.Is(err, fs.ErrNotExist) {
			continue // removed by a Delete since mkdirDurable
		}
		if err != nil {
			return nil, err
		}
		if err := flock(f); err != nil {
			f.Close()
			return nil, err
		}
		// A Delete may have removed the directory while this waited, and
		// a lock on a removed file guards nothing: look again.
		held, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		cur, err := os.Stat(path)
		if err == nil && os.SameFile(held, cur) {
			return f, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if !create {
			return nil, fs.ErrNotExist
		}
	}
}

func flock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
