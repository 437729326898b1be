// Package sharefs is the sandbox's shared directory: the one host directory
// the VM sees (over virtio-9p, as the mount tag Tag), mounted in the guest at
// GuestDir. Container root filesystems and volumes are mounted below it on
// the host, each container in its own subdirectory (DESIGN decision 9).
//
// The share has two host directories. The runtime mounts into RWDir, which
// the guest never sees. The VMM exports Dir, a read-only view of RWDir that
// receives RWDir's mounts by propagation (Dir is a slave of RWDir). A mount
// keeps its own flags in the view, so a container's rootfs stays writable
// while the directories the runtime creates around it are not: a guest cannot
// plant a symlink where the host will mount the next container's rootfs.
package sharefs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/resource/hostmount"
)

const (
	// Tag is the 9p mount tag of the share.
	Tag = "joeyshare"
	// GuestDir is where the agent mounts the share in the guest.
	GuestDir = "/run/joey/shared"
)

// Share is the shared directory of one sandbox.
type Share struct {
	// Dir is the read-only view exported to the guest.
	Dir string
	// RWDir is where the runtime makes the containers' mounts.
	RWDir string
}

// New returns the share of the sandbox whose state directory is
// sandboxDir. It touches nothing on disk.
func New(sandboxDir string) *Share {
	return &Share{
		Dir:   filepath.Join(sandboxDir, "shared"),
		RWDir: filepath.Join(sandboxDir, "shared.rw"),
	}
}

// Setup creates both directories and mounts them: RWDir bound on itself as
// a private peer group of its own, then Dir as its read-only slave. Each
// mount point is recorded before it is mounted. On error what was mounted
// is unmounted again.
func (s *Share) Setup(ctx context.Context, record hostmount.Recorder) (retErr error) {
	for _, d := range []string{s.RWDir, s.Dir} {
		if err := os.Mkdir(d, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("set up share: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			s.Teardown(context.WithoutCancel(ctx))
		}
	}()
	if err := record(ctx, s.RWDir); err != nil {
		return fmt.Errorf("set up share: record %s: %w", s.RWDir, err)
	}
	// Private first: mounts made under RWDir must not travel to wherever
	// the state directory's own mount propagates (on systemd hosts "/" is
	// shared with every mount namespace on the machine). Then shared, so
	// that Dir can be its slave.
	steps := []mountStep{
		{"bind", s.RWDir, s.RWDir, unix.MS_BIND},
		{"make private", "", s.RWDir, unix.MS_PRIVATE},
		{"make shared", "", s.RWDir, unix.MS_SHARED},
	}
	if err := mountSteps(steps); err != nil {
		return fmt.Errorf("set up share: %w", err)
	}
	if err := record(ctx, s.Dir); err != nil {
		return fmt.Errorf("set up share: record %s: %w", s.Dir, err)
	}
	steps = []mountStep{
		{"bind", s.RWDir, s.Dir, unix.MS_BIND},
		{"make slave", "", s.Dir, unix.MS_SLAVE},
		{"make read-only", "", s.Dir, unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY},
	}
	if err := mountSteps(steps); err != nil {
		return fmt.Errorf("set up share: %w", err)
	}
	return nil
}

// mountStep is one mount(2) call of Setup.
type mountStep struct {
	what        string
	source, tgt string
	flags       uintptr
}

func mountSteps(steps []mountStep) error {
	for _, st := range steps {
		if err := unix.Mount(st.source, st.tgt, "", st.flags, ""); err != nil {
			return fmt.Errorf("%s %s: %w", st.what, st.tgt, err)
		}
	}
	return nil
}

// Teardown unmounts the share and everything still mounted in it (the
// read-only view first, then the writable side). It is idempotent.
func (s *Share) Teardown(ctx context.Context) error {
	return hostmount.UnmountAll(ctx, []string{s.RWDir, s.Dir})
}

// Device is the shared filesystem to give the VM.
func (s *Share) Device() hypervisor.SharedFS {
	return hypervisor.SharedFS{Tag: Tag, Kind: hypervisor.SharedFS9P, HostPath: s.Dir}
}

// Storage is how the agent mounts the share.
func (s *Share) Storage() *protocol.Storage {
	return &protocol.Storage{Driver: "9p", Source: Tag, Fstype: "9p", MountPoint: GuestDir}
}

// ContainerDir is a container's directory on the writable side, created
// when missing.
func (s *Share) ContainerDir(id string) (string, error) {
	if err := checkName(id); err != nil {
		return "", err
	}
	dir := filepath.Join(s.RWDir, id)
	if err := os.Mkdir(dir, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("container dir: %w", err)
	}
	return dir, nil
}

// GuestPath maps a path under RWDir to the path the guest sees it at.
func (s *Share) GuestPath(hostPath string) (string, error) {
	rel, err := filepath.Rel(s.RWDir, hostPath)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s is not under the share %s", hostPath, s.RWDir)
	}
	return path.Join(GuestDir, filepath.ToSlash(rel)), nil
}

// RemoveContainerDir removes a container's directory once its mounts are
// gone. It only removes empty directories and the empty files made as
// mount points, never recursively: a mount that is still there (a failed
// unmount) makes it fail rather than delete the files of a volume.
func (s *Share) RemoveContainerDir(id string) error {
	if err := checkName(id); err != nil {
		return err
	}
	dir := filepath.Join(s.RWDir, id)
	var errs []error
	for _, sub := range []string{"mounts", ""} {
		d := filepath.Join(dir, sub)
		entries, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if sub == "" && e.Name() == "mounts" {
				continue
			}
			if err := removeMountPoint(filepath.Join(d, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove container dir %s: %w", dir, err)
	}
	return nil
}

// removeMountPoint removes an empty directory or an empty regular file.
func removeMountPoint(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if fi.Mode().IsRegular() && fi.Size() != 0 {
		return fmt.Errorf("%s is not an empty mount point (%d bytes): still mounted? left in place", p, fi.Size())
	}
	return os.Remove(p)
}

func checkName(id string) error {
	if id == "" || id == "." || id == ".." || filepath.Base(id) != id {
		return fmt.Errorf("container id %q cannot name a directory of the share", id)
	}
	return nil
}
