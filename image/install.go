package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// checkOutDir makes sure out is missing, empty or a guest image: replacing
// it swaps the whole directory, which must never take a user's other files
// with it (think --out /tmp).
func checkOutDir(out string) error {
	entries, err := os.ReadDir(out)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--out %s: %w", out, err)
	}
	for _, e := range entries {
		switch e.Name() {
		case VmlinuzFile, VmlinuxFile, InitrdFile, ManifestFile:
		default:
			return fmt.Errorf("--out %s holds %s, which is not part of a guest image: choose a new or empty directory", out, e.Name())
		}
	}
	return nil
}

// stagingDir makes the directory a build writes into: next to out, so the
// final rename stays on one filesystem.
func stagingDir(out string) (string, error) {
	parent := filepath.Dir(out)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".build-")
	if err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("--out: %w", err)
	}
	return dir, nil
}

// install puts the finished staging directory at out in one step: a plain
// rename when out does not exist, else an atomic exchange of the two
// directories (renameat2 RENAME_EXCHANGE), after which staging holds the
// old image for the caller to remove. Readers see the old image or the new
// one, never a mix.
func install(staging, out string) error {
	if err := checkOutDir(out); err != nil {
		return err
	}
	err := unix.Renameat2(unix.AT_FDCWD, staging, unix.AT_FDCWD, out, unix.RENAME_EXCHANGE)
	switch {
	case errors.Is(err, unix.ENOENT):
		err = os.Rename(staging, out)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		// A filesystem without exchange: move the old image aside first.
		// out is briefly missing, but never holds a mix of two images.
		old := staging + ".old"
		if err = os.Rename(out, old); err == nil {
			if err = os.Rename(staging, out); err != nil {
				os.Rename(old, out)
			} else {
				err = os.RemoveAll(old)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("install image in %s: %w", out, err)
	}
	return syncDir(filepath.Dir(out))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// outputFile writes one file of the image through a hash, so its
// checksum comes without reading it back.
func outputFile(dir, name string, write func(io.Writer) error) (info FileInfo, retErr error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return info, err
	}
	defer func() {
		if err := f.Close(); retErr == nil && err != nil {
			retErr = err
		}
	}()
	h := &countingHash{Hash: sha256.New()}
	if err := write(io.MultiWriter(f, h)); err != nil {
		return info, fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return info, fmt.Errorf("write %s: %w", name, err)
	}
	return FileInfo{SHA256: hex.EncodeToString(h.Sum(nil)), Size: h.n}, nil
}

type countingHash struct {
	hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.Hash.Write(p)
}
