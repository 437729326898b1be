package container

import (
	"fmt"
	"io"
	"os"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// RootIsRamfs reports whether this process's root is the initial rootfs
// (an initramfs), from which pivot_root fails with EINVAL: then containers
// need Options.NoPivotRoot. Whether the initial rootfs is ramfs or tmpfs
// depends on the kernel, but the kernel names it "rootfs" in mountinfo
// either way.
func RootIsRamfs() bool {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err == nil && st.Type == unix.RAMFS_MAGIC {
		return true
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	initial, err := rootIsInitialRootfs(f)
	return err == nil && initial
}

// rootIsInitialRootfs reads a mountinfo table and reports whether the mount
// that is "/" now (the last one mounted there) is the kernel's rootfs.
func rootIsInitialRootfs(r io.Reader) (bool, error) {
	atRoot := func(m *mountinfo.Info) (skip, stop bool) { return m.Mountpoint != "/", false }
	mounts, err := mountinfo.GetMountsFromReader(r, atRoot)
	if err != nil {
		return false, fmt.Errorf("read mountinfo: %w", err)
	}
	if len(mounts) == 0 {
		return false, fmt.Errorf("read mountinfo: no mount at /")
	}
	return mounts[len(mounts)-1].FSType == "rootfs", nil
}
