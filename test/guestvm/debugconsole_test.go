package guestvm

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/image"
	"github.com/joeyrt/joey/internal/testutil"
)

// debugImage builds (or reuses, through the builder's cache) an image with
// --debug-console next to the test image, from the same kernel package and
// the agent `make build` made.
func debugImage(t *testing.T) string {
	t.Helper()
	base := testutil.GuestImage(t)
	deb := os.Getenv("JOEY_KERNEL_DEB")
	if deb == "" {
		testutil.Unavailable(t, "JOEY_KERNEL_DEB is not set: run `make test`")
	}
	agent, err := filepath.Abs("../../bin/joey-agent")
	if err != nil {
		t.Fatal(err)
	}
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

func TestDebugConsoleImageGivesAShellOnItsPort(t *testing.T) {
	testutil.RequireRoot(t)
	g := bootImage(t, debugImage(t), t.TempDir(), true)
	dc, ok := g.vm.(hypervisor.DebugConsoler)
	if !ok {
		t.Fatal("the QEMU VM does not offer a debug console")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := dc.DebugConsole(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := conn.Write([]byte("echo joey-$((40+2)); cat /proc/1/cmdline; echo\n")); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "joey-42") {
			return
		}
	}
	t.Fatalf("no answer from the debug shell: %v", sc.Err())
}
