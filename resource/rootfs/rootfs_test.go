package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/resource/internal/mounttest"
)

type recorder []string

func (r *recorder) record(_ context.Context, target string) error {
	*r = append(*r, target)
	return nil
}

func TestMountShowsTheRootfsAndUnmountLeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name string
		// prepare makes the rootfs under dir and returns the mounts and
		// root for Mount, and the host path where the rootfs's files live.
		prepare func(t *testing.T, dir string) ([]mount.Mount, *specs.Root, string)
		// writesTo is where a write through the target lands.
		writesTo func(dir string) string
	}{
		{
			name: "containerd overlay",
			prepare: func(t *testing.T, dir string) ([]mount.Mount, *specs.Root, string) {
				mounttest.Tmpfs(t, filepath.Join(dir, "snap"))
				lower := filepath.Join(dir, "snap", "lower")
				for _, d := range []string{lower, filepath.Join(dir, "snap", "upper"), filepath.Join(dir, "snap", "work")} {
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				return []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
					"lowerdir=" + lower,
					"upperdir=" + filepath.Join(dir, "snap", "upper"),
					"workdir=" + filepath.Join(dir, "snap", "work"),
				}}}, &specs.Root{Path: "rootfs"}, lower
			},
			writesTo: func(dir string) string { return filepath.Join(dir, "snap", "upper") },
		},
		{
			name: "containerd bind",
			prepare: func(t *testing.T, dir string) ([]mount.Mount, *specs.Root, string) {
				src := filepath.Join(dir, "snap")
				mounttest.Tmpfs(t, src)
				return []mount.Mount{{Type: "bind", Source: src, Options: []string{"rbind", "rw"}}}, nil, src
			},
			writesTo: func(dir string) string { return filepath.Join(dir, "snap") },
		},
		{
			name: "bundle root.path relative",
			prepare: func(t *testing.T, dir string) ([]mount.Mount, *specs.Root, string) {
				src := filepath.Join(dir, "bundle", "rootfs")
				mounttest.Tmpfs(t, src)
				return nil, &specs.Root{Path: "rootfs", Readonly: true}, src
			},
			writesTo: func(dir string) string { return filepath.Join(dir, "bundle", "rootfs") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := mounttest.Dir(t)
			mounts, root, files := tt.prepare(t, dir)
			mounttest.WriteFile(t, filepath.Join(files, "hello"), "from the image")
			before := mounttest.Under(t, dir)
			target := filepath.Join(dir, "share", "c1", "rootfs")
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				t.Fatal(err)
			}
			var rec recorder
			if err := Mount(ctx, target, mounts, root, filepath.Join(dir, "bundle"), rec.record); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rec, []string{target}) {
				t.Fatalf("recorded %q, want the target", rec)
			}
			if got := mounttest.ReadFile(t, filepath.Join(target, "hello")); got != "from the image" {
				t.Fatalf("rootfs shows %q", got)
			}
			mounttest.WriteFile(t, filepath.Join(target, "new"), "y")
			if got := mounttest.ReadFile(t, filepath.Join(tt.writesTo(dir), "new")); got != "y" {
				t.Fatalf("write landed elsewhere: %q", got)
			}
			if err := Unmount(ctx, target); err != nil {
				t.Fatal(err)
			}
			if after := mounttest.Under(t, dir); !slices.Equal(after, before) {
				t.Fatalf("mounts after Unmount %q, want %q", after, before)
			}
		})
	}
}

func TestMountWithoutARootfsFailsAndLeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name   string
		mounts []mount.Mount
		root   *specs.Root
		bundle string
	}{
		{name: "no mounts no root"},
		{name: "relative root without bundle", root: &specs.Root{Path: "rootfs"}},
		{name: "root.path missing", root: &specs.Root{Path: "/nonexistent/rootfs"}},
		{name: "mount that fails", mounts: []mount.Mount{{Type: "bind", Source: "/nonexistent", Options: []string{"rbind"}}}},
		{name: "second mount fails after the first stacked", mounts: []mount.Mount{
			{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}},
			{Type: "bind", Source: "/nonexistent", Options: []string{"rbind"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := mounttest.Dir(t)
			target := filepath.Join(dir, "rootfs")
			var rec recorder
			if err := Mount(context.Background(), target, tt.mounts, tt.root, tt.bundle, rec.record); err == nil {
				t.Fatal("Mount succeeded")
			}
			if left := mounttest.Under(t, dir); len(left) != 0 {
				t.Fatalf("left mounted: %q", left)
			}
		})
	}
}
