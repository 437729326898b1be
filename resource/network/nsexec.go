package network

import (
	"fmt"
	"runtime"

	"github.com/joeyrt/joey/internal/netnsexec"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetNS runs fn on an OS thread inside the pod's network namespace.
func inNetNS(path string, fn func() error) error { return netnsexec.Run(path, fn) }

// withNetNSSysfs runs fn with a sysfs that shows the network namespace at
// path: /sys/class/net of the host's sysfs mount lists the links of the
// namespace that mounted it, never the pod's. fn runs on a thread that has
// entered the pod's namespace and a private mount namespace of its own, in
// which a fresh sysfs is mounted on /sys and a tmpfs on /tmp (scratch space
// for device nodes nobody else must see). The thread is never given back
// to the Go scheduler: it ends with its goroutine, and its mount namespace
// with it, so nothing of this is visible outside fn.
func withNetNSSysfs(path string, fn func(sysfs, scratch string) error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer target.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		done <- func() error {
			if err := netns.Set(target); err != nil {
				return fmt.Errorf("enter network namespace %s: %w", path, err)
			}
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare mount namespace: %w", err)
			}
			// Slave first, so the mounts below never propagate to the host.
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
				return fmt.Errorf("make mounts private: %w", err)
			}
			if err := unix.Mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV, ""); err != nil {
				return fmt.Errorf("mount sysfs of %s: %w", path, err)
			}
			if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0700,size=64k"); err != nil {
				return fmt.Errorf("mount scratch tmpfs: %w", err)
			}
			return fn("/sys", "/tmp")
		}()
	}()
	return <-done
}
