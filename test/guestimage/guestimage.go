// Package guestimage gives tests the guest images they boot beyond the one
// `make test` builds: the debug-console variant, built next to it from the
// same kernel package and agent and reused through the builder's cache.
package guestimage

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/joeyrt/joey/image"
	"github.com/joeyrt/joey/internal/testutil"
)

// Debug returns the directory of the image built with --debug-console (a
// busybox shell on the console.1 port).
func Debug(t testing.TB) string {
	t.Helper()
	base := testutil.GuestImage(t)
	deb := os.Getenv("JOEY_KERNEL_DEB")
	if deb == "" {
		testutil.Unavailable(t, "JOEY_KERNEL_DEB is not set: run `make test`")
	}
	_, self, _, _ := runtime.Caller(0)
	agent := filepath.Join(filepath.Dir(self), "../../bin/joey-agent")
	if _, err := os.Stat(agent); err != nil {
		testutil.Unavailable(t, "bin/joey-agent is missing: run `make build`")
	}
	out := filepath.Clean(base) + "-debug"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := image.Build(ctx, image.Options{KernelPackage: deb, Agent: agent, Out: out, DebugConsole: true}); err != nil {
		t.Fatal(err)
	}
	return out
}
