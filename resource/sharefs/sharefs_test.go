package sharefs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/resource/hostmount"
	"github.com/joeyrt/joey/resource/internal/mounttest"
)

func setup(t *testing.T) (*Share, string, *[]string) {
	t.Helper()
	testutil.RequireRoot(t)
	sandbox := mounttest.Dir(t)
	s := New(sandbox)
	var recorded []string
	record := func(_ context.Context, target string) error {
		recorded = append(recorded, target)
		return nil
	}
	if err := s.Setup(context.Background(), record); err != nil {
		t.Fatal(err)
	}
	return s, sandbox, &recorded
}

func TestShareExportsAReadOnlyViewThatReceivesContainerMounts(t *testing.T) {
	s, sandbox, recorded := setup(t)
	if want := []string{s.RWDir, s.Dir}; !slices.Equal(*recorded, want) {
		t.Fatalf("recorded %q, want %q (each before it was mounted)", *recorded, want)
	}
	// The guest must not be able to create anything where the host mounts.
	if err := os.Mkdir(filepath.Join(s.Dir, "c2"), 0o755); !errors.Is(err, unix.EROFS) {
		t.Fatalf("mkdir in the exported view: %v, want EROFS", err)
	}
	cdir, err := s.ContainerDir("c1")
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(cdir, "rootfs")
	mounttest.Tmpfs(t, rootfs)
	inView := filepath.Join(s.Dir, "c1", "rootfs", "written-by-guest")
	mounttest.WriteFile(t, inView, "x")
	if got := mounttest.ReadFile(t, filepath.Join(rootfs, "written-by-guest")); got != "x" {
		t.Fatalf("rootfs on the writable side shows %q", got)
	}

	// A read-only volume stays read-only in the view too.
	src := filepath.Join(sandbox, "volsrc")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(cdir, "vol")
	if _, err := hostmount.MakeTarget(src, vol); err != nil {
		t.Fatal(err)
	}
	if err := hostmount.Bind(src, vol, false, true); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "c1", "vol", "f"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write into a read-only volume through the view: %v, want EROFS", err)
	}

	if err := s.Teardown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := mounttest.Under(t, sandbox); len(left) != 0 {
		t.Fatalf("still mounted after Teardown: %q", left)
	}
	if err := s.Teardown(context.Background()); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
}

func TestRemoveContainerDirNeverDeletesMountedFiles(t *testing.T) {
	s, sandbox, _ := setup(t)
	cdir, err := s.ContainerDir("c1")
	if err != nil {
		t.Fatal(err)
	}
	mounts := filepath.Join(cdir, "mounts")
	vol := filepath.Join(mounts, "0")
	mounttest.Tmpfs(t, vol)
	precious := filepath.Join(vol, "precious")
	mounttest.WriteFile(t, precious, "data")
	if err := os.WriteFile(filepath.Join(mounts, "1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveContainerDir("c1"); err == nil {
		t.Fatal("RemoveContainerDir succeeded with a volume still mounted")
	}
	if got := mounttest.ReadFile(t, precious); got != "data" {
		t.Fatalf("a file of the mounted volume changed: %q", got)
	}
	if err := hostmount.Unmount(context.Background(), vol); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveContainerDir("c1"); err != nil {
		t.Fatalf("after unmounting: %v", err)
	}
	if _, err := os.Stat(cdir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("container dir still there: %v", err)
	}
	if err := s.Teardown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := mounttest.Under(t, sandbox); len(left) != 0 {
		t.Fatalf("still mounted after Teardown: %q", left)
	}
}

func TestGuestPathMapsTheWritableSide(t *testing.T) {
	s := New("/run/joey/default/sb")
	tests := []struct {
		host, want string
		bad        bool
	}{
		{host: "/run/joey/default/sb/shared.rw/c1/rootfs", want: "/run/joey/shared/c1/rootfs"},
		{host: "/run/joey/default/sb/shared.rw", want: "/run/joey/shared"},
		{host: "/run/joey/default/sb/shared/c1", bad: true},
		{host: "/etc", bad: true},
	}
	for _, tt := range tests {
		got, err := s.GuestPath(tt.host)
		if tt.bad {
			if err == nil {
				t.Errorf("GuestPath(%q) = %q, want an error", tt.host, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("GuestPath(%q) = %q, %v; want %q", tt.host, got, err, tt.want)
		}
	}
}

func TestContainerDirRejectsIDsThatLeaveTheShare(t *testing.T) {
	s := New(t.TempDir())
	for _, id := range []string{"", ".", "..", "a/b", "../x"} {
		if _, err := s.ContainerDir(id); err == nil {
			t.Errorf("ContainerDir(%q) accepted", id)
		}
	}
}
