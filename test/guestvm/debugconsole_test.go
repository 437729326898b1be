package guestvm

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
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

// TestFreedGuestMemoryLeavesQEMU: with free page reporting, memory the
// guest fills and frees again goes back to the host: QEMU's guest RAM
// mapping shrinks to about where it was.
func TestFreedGuestMemoryLeavesQEMU(t *testing.T) {
	testutil.RequireRoot(t)
	g := bootImage(t, guestimage.Debug(t), t.TempDir(), true, func(c *hypervisor.Config) { c.FreePageReporting = true })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := g.vm.(hypervisor.DebugConsoler).DebugConsole(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sh := guestimage.NewShell(conn, nil)
	start := guestRAMMiB(t, g.vm.Pid(), 512)
	if out, _, err := sh.Run("dd if=/dev/zero of=/fill bs=1M count=200 2>&1 | tail -1; sync", 2*time.Minute); err != nil {
		t.Fatalf("fill guest memory: %v:\n%s", err, out)
	}
	full := guestRAMMiB(t, g.vm.Pid(), 512)
	if full < start+150 {
		t.Fatalf("QEMU's guest RAM holds %d MiB after a 200 MiB file, %d MiB before: the fill did not land", full, start)
	}
	if out, _, err := sh.Run("rm /fill; echo 3 > /proc/sys/vm/drop_caches", time.Minute); err != nil {
		t.Fatalf("free guest memory: %v:\n%s", err, out)
	}
	deadline := time.Now().Add(45 * time.Second)
	now := full
	for time.Now().Before(deadline) {
		if now = guestRAMMiB(t, g.vm.Pid(), 512); now <= full-100 {
			t.Logf("QEMU's guest RAM: %d MiB at boot, %d MiB with the file, %d MiB after it was removed", start, full, now)
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("QEMU's guest RAM holds %d MiB 45 s after the guest freed 200 MiB (%d MiB with the file)", now, full)
}

// guestRAMMiB is the resident size of QEMU's guest RAM mapping: the
// anonymous mapping of the guest's memory size.
func guestRAMMiB(t *testing.T, pid, memMiB int) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var size, best int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "Size:":
			size, _ = strconv.ParseInt(fields[1], 10, 64)
		case "Rss:":
			rss, _ := strconv.ParseInt(fields[1], 10, 64)
			if want := int64(memMiB) << 10; size >= want && size <= want+4096 && rss > best {
				best = rss
			}
		}
	}
	return int(best >> 10)
}
