package guestvm

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/test/guestimage"
)

func TestDebugConsoleImageGivesAShellOnItsPort(t *testing.T) {
	testutil.RequireRoot(t)
	g := bootImage(t, guestimage.Debug(t), t.TempDir(), true)
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
