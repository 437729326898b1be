// Package netnsexec runs code inside a network namespace. Namespaces belong
// to OS threads, not goroutines, so the code runs on a fresh goroutine
// locked to its thread; TAP devices, netlink sockets and child processes
// made there are born in that namespace. The TAP package, the pod network
// and the VMM launcher all need this, and it is easy to get subtly wrong.
package netnsexec

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Run runs fn on an OS thread inside the network namespace at path ("" =
// the caller's own, fn runs directly). If the thread cannot be switched
// back, its goroutine ends still locked and the Go runtime discards the
// thread rather than run other goroutines in the wrong namespace.
func Run(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer target.Close()

	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(fnErr, fmt.Errorf("leave network namespace %s: %w", path, err))
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		done <- fnErr
	}()
	return <-done
}

// Create makes a new network namespace and pins it by bind-mounting it on
// path, which must be an existing file. The thread that made it ends with
// its goroutine (it is never unlocked), so no other goroutine runs there.
// The namespace lives until path is unmounted and its last user is gone.
func Create(path string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("pin network namespace on %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	return <-errc
}
