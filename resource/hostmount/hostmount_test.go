package hostmount

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/resource/internal/mounttest"
)

func TestBindShowsSourceAndEnforcesReadOnly(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name      string
		file      bool
		recursive bool
		readOnly  bool
	}{
		{name: "dir rw"},
		{name: "dir ro", readOnly: true},
		{name: "file rw", file: true},
		{name: "file ro", file: true, readOnly: true},
		{name: "rbind ro", recursive: true, readOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := mounttest.Dir(t)
			src := filepath.Join(dir, "src")
			mounttest.Tmpfs(t, src)
			mounttest.WriteFile(t, filepath.Join(src, "f"), "hello")
			source, target := src, filepath.Join(dir, "target")
			if tt.file {
				source = filepath.Join(src, "f")
			}
			if _, err := MakeTarget(source, target); err != nil {
				t.Fatal(err)
			}
			if err := Bind(source, target, tt.recursive, tt.readOnly); err != nil {
				t.Fatal(err)
			}
			written := target
			if !tt.file {
				if got := mounttest.ReadFile(t, filepath.Join(target, "f")); got != "hello" {
					t.Fatalf("bound dir shows %q, want hello", got)
				}
				written = filepath.Join(target, "new")
			}
			err := os.WriteFile(written, []byte("written"), 0o644)
			switch {
			case tt.readOnly && !errors.Is(err, unix.EROFS):
				t.Fatalf("write through a read-only bind: %v, want EROFS", err)
			case !tt.readOnly && err != nil:
				t.Fatalf("write through a rw bind: %v", err)
			case !tt.readOnly:
				onHost := filepath.Join(src, "new")
				if tt.file {
					onHost = source
				}
				if got := mounttest.ReadFile(t, onHost); got != "written" {
					t.Fatalf("source shows %q after a write through the bind", got)
				}
			}
		})
	}
}

func TestBindReadOnlyRecursiveCoversSubmounts(t *testing.T) {
	testutil.RequireRoot(t)
	dir := mounttest.Dir(t)
	src := filepath.Join(dir, "src")
	mounttest.Tmpfs(t, src)
	mounttest.Tmpfs(t, filepath.Join(src, "sub"))
	target := filepath.Join(dir, "target")
	if _, err := MakeTarget(src, target); err != nil {
		t.Fatal(err)
	}
	if err := Bind(src, target, true, true); err != nil {
		t.Fatal(err)
	}
	err := os.WriteFile(filepath.Join(target, "sub", "x"), nil, 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Fatalf("write into a submount of a read-only rbind: %v, want EROFS", err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "x"), nil, 0o644); err != nil {
		t.Fatalf("the source itself must stay writable: %v", err)
	}
}

func TestMakeTargetRefusesASymlink(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "f")
	if err := os.WriteFile(src, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if _, err := MakeTarget(src, link); err == nil {
		t.Fatal("MakeTarget followed a symlink at the target")
	}
	if _, err := os.Lstat(victim); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the symlink's target was created: %v", err)
	}
}

func TestUnmountRemovesStackedNestedAndBusyMounts(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	dir := mounttest.Dir(t)
	before := mounttest.Under(t, dir)
	target := filepath.Join(dir, "t")
	mounttest.Tmpfs(t, target)
	mounttest.Tmpfs(t, target) // stacked on the first
	mounttest.Tmpfs(t, filepath.Join(target, "nested"))
	busy, err := os.Create(filepath.Join(target, "nested", "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if n := len(mounttest.Under(t, target)); n != 3 {
		t.Fatalf("%d mounts under the target before, want 3", n)
	}
	if err := Unmount(ctx, target); err != nil {
		t.Fatal(err)
	}
	if after := mounttest.Under(t, dir); !slices.Equal(after, before) {
		t.Fatalf("mounts after Unmount %q, want %q", after, before)
	}
	if err := Unmount(ctx, target); err != nil {
		t.Fatalf("second Unmount: %v", err)
	}
	if err := Unmount(ctx, filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("Unmount of a missing path: %v", err)
	}
}

func TestUnmountAllGoesInReverse(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	dir := mounttest.Dir(t)
	a := filepath.Join(dir, "a")
	mounttest.Tmpfs(t, a)
	b := filepath.Join(a, "b")
	mounttest.Tmpfs(t, b)
	if err := UnmountAll(ctx, []string{a, b, filepath.Join(dir, "never-mounted")}); err != nil {
		t.Fatal(err)
	}
	if left := mounttest.Under(t, dir); len(left) != 0 {
		t.Fatalf("left mounted: %q", left)
	}
}
