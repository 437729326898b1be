// Package rootfs mounts a container's root filesystem into the sandbox's
// share on the host, where the guest finds it (DESIGN decision 9).
//
// containerd hands over its snapshotter's mounts (overlay, bind, …), which
// are mounted as they are with containerd's own mount.All. A plain bundle
// (joey run, a runc-style bundle) has no mounts: its root.path directory is
// bound there instead.
//
// root.readonly is the guest's to enforce: it stays in the spec the guest
// gets, and the guest's libcontainer remounts the root read-only after it has
// made the mount points the spec needs, as runc does on a host. Making the
// host side read-only would break exactly that step.
package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/core/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/resource/hostmount"
)

// Mount makes the root filesystem appear at target, creating target. With
// mounts (containerd's rootfs) they are mounted there in order; without,
// root.Path (relative paths are relative to bundle) is bound there
// recursively. target is recorded before anything is mounted; on error
// whatever was mounted is unmounted again.
func Mount(ctx context.Context, target string, mounts []mount.Mount, root *specs.Root, bundle string, record hostmount.Recorder) (retErr error) {
	var source string
	if len(mounts) == 0 {
		var err error
		if source, err = rootPath(root, bundle); err != nil {
			return fmt.Errorf("mount rootfs: %w", err)
		}
	}
	if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("mount rootfs: %w", err)
	}
	if err := record(ctx, target); err != nil {
		return fmt.Errorf("mount rootfs: record %s: %w", target, err)
	}
	defer func() {
		if retErr != nil {
			if err := hostmount.Unmount(context.WithoutCancel(ctx), target); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	if len(mounts) > 0 {
		if err := mount.All(mounts, target); err != nil {
			return fmt.Errorf("mount rootfs on %s: %w", target, err)
		}
		return nil
	}
	fi, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("mount rootfs: root.path: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("mount rootfs: root.path %s is not a directory", source)
	}
	if err := hostmount.Bind(source, target, true, false); err != nil {
		return fmt.Errorf("mount rootfs: %w", err)
	}
	return nil
}

func rootPath(root *specs.Root, bundle string) (string, error) {
	if root == nil || root.Path == "" {
		return "", errors.New("no rootfs mounts and the spec has no root.path: give one or the other")
	}
	if filepath.IsAbs(root.Path) {
		return root.Path, nil
	}
	if bundle == "" {
		return "", fmt.Errorf("root.path %q is relative and there is no bundle directory to resolve it against", root.Path)
	}
	return filepath.Join(bundle, root.Path), nil
}

// Unmount removes everything mounted at target and below. It is idempotent.
func Unmount(ctx context.Context, target string) error {
	return hostmount.Unmount(ctx, target)
}
