package persist

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/testutil"
)

// Removing a sandbox directory with a container's rootfs still mounted in it
// would delete the container's files, so Delete must refuse.
func TestDeleteRefusesWhileSomethingIsMounted(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	s := newStore(t)
	if err := s.Save(ctx, sandbox("default", "sb")); err != nil {
		t.Fatal(err)
	}
	dir, _ := s.Dir("default", "sb")
	mnt := filepath.Join(dir, "shared", "rootfs")
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	precious := filepath.Join(mnt, "precious")
	if err := os.WriteFile(precious, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}

	err := s.Delete(ctx, "default", "sb")
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), mnt) || !strings.Contains(err.Error(), "unmount") {
		t.Errorf("Delete with %s mounted: %v, want ErrFailedPrecondition naming it and saying to unmount", mnt, err)
	}
	if _, err := os.Stat(precious); err != nil {
		t.Fatalf("a file in the mounted filesystem was lost: %v", err)
	}

	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	mounted = false
	if err := s.Delete(ctx, "default", "sb"); err != nil {
		t.Fatalf("Delete after unmount: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("sandbox directory still there: %v", err)
	}
}
