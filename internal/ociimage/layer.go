package ociimage

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// epoch is the modification time of every file the package writes, so that
// the same busybox always gives the same bytes.
var epoch = time.Unix(0, 0).UTC()

// tarHeader is the reproducible header of e: fixed time, root owner, no names
// of the building host's users.
func tarHeader(e entry) *tar.Header {
	h := &tar.Header{
		Name:    e.name,
		Mode:    int64(e.mode.Perm()),
		ModTime: epoch,
		Format:  tar.FormatPAX,
	}
	if e.mode&fs.ModeSticky != 0 {
		h.Mode |= 0o1000
	}
	switch {
	case e.mode.IsDir():
		h.Typeflag = tar.TypeDir
		h.Name += "/"
	case e.mode&fs.ModeSymlink != 0:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = e.linkname
	default:
		h.Typeflag = tar.TypeReg
		h.Size = int64(len(e.data))
	}
	return h
}

// writeTar writes entries as an uncompressed tar stream.
func writeTar(w io.Writer, entries []entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if err := tw.WriteHeader(tarHeader(e)); err != nil {
			return fmt.Errorf("write tar header %s: %w", e.name, err)
		}
		if e.data != nil {
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("write tar data %s: %w", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close tar: %w", err)
	}
	return nil
}

// unpack creates entries under dir. Modes are set with chmod after creation,
// since the process umask would otherwise strip the sticky bit of /tmp and
// group/other bits.
func unpack(dir string, entries []entry) error {
	for _, e := range entries {
		p := filepath.Join(dir, filepath.FromSlash(e.name))
		switch {
		case e.mode.IsDir():
			if err := os.Mkdir(p, 0o700); err != nil && !os.IsExist(err) {
				return fmt.Errorf("create rootfs dir: %w", err)
			}
		case e.mode&fs.ModeSymlink != 0:
			if err := os.Symlink(e.linkname, p); err != nil {
				return fmt.Errorf("create rootfs symlink: %w", err)
			}
			continue
		default:
			if err := os.WriteFile(p, e.data, 0o600); err != nil {
				return fmt.Errorf("create rootfs file: %w", err)
			}
		}
		if err := os.Chmod(p, e.mode&(fs.ModePerm|fs.ModeSticky)); err != nil {
			return fmt.Errorf("set rootfs mode: %w", err)
		}
	}
	return nil
}

// busyboxEntries reads the host's busybox and lists the image's files.
func busyboxEntries(ctx context.Context) ([]entry, string, error) {
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, "", fmt.Errorf("read busybox (apt-get install busybox-static): %w", err)
	}
	bb, err := loadBusybox(data)
	if err != nil {
		return nil, "", err
	}
	names, err := applets(ctx, BusyboxPath)
	if err != nil {
		return nil, "", err
	}
	return rootfs(bb, names), bb.arch, nil
}

// BusyboxRootfs writes the busybox image's rootfs, unpacked, into dir, which
// must be empty or missing. The files belong to the calling user rather than
// root as in the image, so that tests that are not root can make one too.
func BusyboxRootfs(dir string) error {
	entries, _, err := busyboxEntries(context.Background())
	if err != nil {
		return fmt.Errorf("busybox rootfs %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	if err := unpack(dir, entries); err != nil {
		return fmt.Errorf("busybox rootfs %s: %w", dir, err)
	}
	return nil
}
