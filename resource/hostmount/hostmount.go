// Package hostmount makes and undoes the host mounts of a sandbox: bind
// mounts attached in their final state, and unmounts that take whatever is
// stacked on or below a mount point, so that cleanup after a crash does not
// need to know how a mount was made.
package hostmount

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Recorder makes a mount point durable in the sandbox's persisted state
// before it is mounted, so that a cleanup after a crash (the shim was
// killed between the mount and the next save) still knows to undo it.
// Recording a target that then fails to mount is harmless: unmounting
// something that is not mounted is not an error.
type Recorder func(ctx context.Context, target string) error

// Bind attaches source at target, which must exist (a directory for a
// directory, a file for anything else). recursive takes the mounts below
// source too (an OCI "rbind"). With readOnly the new mount, and with
// recursive every mount below it, is read-only from the moment it is
// attached: it is built detached (open_tree) and only then moved into
// place, so a mount propagated into a read-only view of the share carries
// the flag too, which a later MS_REMOUNT would not give it.
func Bind(source, target string, recursive, readOnly bool) error {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, flags)
	if err != nil {
		return fmt.Errorf("bind %s on %s: open_tree: %w", source, target, err)
	}
	defer unix.Close(fd)
	if readOnly {
		attrFlags := uint(unix.AT_EMPTY_PATH)
		if recursive {
			attrFlags |= unix.AT_RECURSIVE
		}
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(fd, "", attrFlags, &attr); err != nil {
			return fmt.Errorf("bind %s on %s: make read-only: %w", source, target, err)
		}
	}
	// Without MOVE_MOUNT_T_SYMLINKS a symlink at target is not followed.
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind %s on %s: move_mount: %w", source, target, err)
	}
	return nil
}

// Under lists the mount points at dir or below it, in the order they were
// mounted. dir is resolved first, since mountinfo holds resolved paths and
// the state directory may sit behind a symlink (/var/run -> /run). A dir
// that does not exist has nothing mounted.
func Under(dir string) ([]string, error) {
	mounts, err := under(dir)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(mounts))
	for i, m := range mounts {
		out[i] = m.Mountpoint
	}
	return out, nil
}

func under(dir string) ([]*mountinfo.Info, error) {
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list mounts under %s: %w", dir, err)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		return nil, fmt.Errorf("list mounts under %s: %w", dir, err)
	}
	return mounts, nil
}

// busyRetries is how often an unmount that finds its mount busy is retried
// before it detaches it: a VMM's 9p server may still be closing files.
const (
	busyRetries = 3
	busyWait    = 20 * time.Millisecond
)

// Unmount removes every mount at target or below it, the deepest and most
// recent first, so that stacked mounts (containerd's rootfs mounts can
// stack) and mounts under a recursive bind go too. A mount that stays busy
// is detached (MNT_DETACH) as the last resort. A target that is not
// mounted, or does not exist, is not an error.
func Unmount(ctx context.Context, target string) error {
	mounts, err := under(target)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	var errs []error
	for _, mp := range reverseByDepth(mounts) {
		if err := unmountOne(ctx, mp); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reverseByDepth orders mount points deepest first and, at one depth, the
// last mounted first: mountinfo lists mounts in the order they were made,
// so a mount stacked on another comes after it.
func reverseByDepth(mounts []*mountinfo.Info) []string {
	idx := make([]int, len(mounts))
	for i := range idx {
		idx[i] = i
	}
	depth := func(i int) int { return strings.Count(mounts[i].Mountpoint, "/") }
	slices.SortStableFunc(idx, func(a, b int) int {
		if d := depth(b) - depth(a); d != 0 {
			return d
		}
		return b - a
	})
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = mounts[j].Mountpoint
	}
	return out
}

func unmountOne(ctx context.Context, mp string) error {
	for attempt := 0; ; attempt++ {
		err := unix.Unmount(mp, unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			// EINVAL: no longer a mount point (a propagated copy that went
			// with its master, or a stacked mount already removed).
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EBUSY) && attempt < busyRetries:
			time.Sleep(busyWait)
			continue
		case errors.Is(err, unix.EBUSY):
			log.G(ctx).WithField("mountpoint", mp).Debug("mount still busy: detaching it")
			if err := unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("unmount %s (detach): %w", mp, err)
			}
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
}

// UnmountAll unmounts targets in reverse order (the order they were made in
// is the order they were recorded in) and reports every failure.
func UnmountAll(ctx context.Context, targets []string) error {
	var errs []error
	for _, t := range slices.Backward(targets) {
		if err := Unmount(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MakeTarget creates what a bind of source needs at target: a directory
// for a directory, an empty file for anything else. It refuses a target
// that exists as something else, and never follows a symlink at target.
func MakeTarget(source, target string) (isDir bool, err error) {
	fi, err := os.Stat(source)
	if err != nil {
		return false, fmt.Errorf("bind source: %w", err)
	}
	if fi.IsDir() {
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return true, fmt.Errorf("make mount point: %w", err)
		}
		if st, err := os.Lstat(target); err != nil || !st.IsDir() {
			return true, fmt.Errorf("make mount point %s: exists and is not a directory", target)
		}
		return true, nil
	}
	fd, err := unix.Open(target, unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return false, fmt.Errorf("make mount point %s: %w", target, err)
	}
	unix.Close(fd)
	return false, nil
}
