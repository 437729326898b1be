package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/internal/testutil"
)

// bootInit is the guest's /init: load the modules, mount the 9p share, find
// the agent port by name (there is no udev), send the share's line over it,
// and write the host's answer back into the share.
const bootInit = `
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $MODULES; do insmod /lib/modules/$m || echo "guest: insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /mnt || echo "guest: 9p mount failed"
port=
for i in $(seq 100); do
	for p in /sys/class/virtio-ports/vport*; do
		[ "$(cat $p/name 2>/dev/null)" = agent.0 ] && port=/dev/${p##*/}
	done
	[ -n "$port" ] && break
	sleep 0.1
done
echo "guest: agent port is ${port:-missing}"
exec 3<>$port
read line < /mnt/in
echo "$line" >&3
read reply <&3
echo "$reply" > /mnt/out
sync
echo "guest: done"
exec sleep 1000
`

// TestBootReachesTheAgentChannelAndTheShareThenStopsClean boots one real
// guest under the accelerator this host gets and proves the path every
// sandbox relies on: the agent channel, the 9p share both ways, pause and
// resume over QMP, and a Stop that leaves no process, socket, directory or
// file descriptor behind.
func TestBootReachesTheAgentChannelAndTheShareThenStopsClean(t *testing.T) {
	kernel, modDir := testKernel(t)
	d := testDriver(t, false)
	dir := shortDir(t)
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	busyboxInitramfs(t, initrd, moduleOrder(t, modDir, "virtio_mmio", "virtio_console", "9pnet_virtio", "9p"), bootInit)
	token := fmt.Sprintf("token-%d", time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(share, "in"), []byte(token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := hypervisor.Config{
		ID:         "boot",
		VCPUs:      1,
		MemoryMiB:  256,
		Kernel:     kernel,
		Initrd:     initrd,
		StateDir:   filepath.Join(dir, "vm"),
		ConsoleLog: filepath.Join(dir, "console.log"),
		SharedFS:   []hypervisor.SharedFS{{Tag: "share", Kind: hypervisor.SharedFS9P, HostPath: share}},
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(cfg.ConsoleLog)
			t.Logf("guest console:\n%s", b)
		}
	})

	warmUpNetpoll(t)
	fds := openFDs(t)
	ctx := testCtx(t, 3*time.Minute)
	testutil.CountVM(t)
	began := time.Now()
	v, err := d.Start(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop(context.Background())

	conn, err := v.AgentConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the agent channel: %v", err)
	}
	if got := strings.TrimSpace(line); got != token {
		t.Fatalf("guest sent %q, want the share's %q", got, token)
	}
	t.Logf("guest's first line on the agent channel %v after Start", time.Since(began).Round(10*time.Millisecond))
	if _, err := fmt.Fprintf(conn, "reply-%s\n", token); err != nil {
		t.Fatal(err)
	}
	want := "reply-" + token + "\n"
	for {
		b, _ := os.ReadFile(filepath.Join(share, "out"))
		if string(b) == want {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("share/out holds %q, want %q", b, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn.Close()

	qv := v.(*vm)
	for _, step := range []struct {
		name string
		do   func(context.Context) error
		want string
	}{
		{"pause", v.(hypervisor.Pauser).Pause, "paused"},
		{"resume", v.(hypervisor.Pauser).Resume, "running"},
	} {
		if err := step.do(ctx); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if st, err := qv.qmp.QueryStatus(ctx); err != nil || st.Status != step.want {
			t.Fatalf("after %s: status %+v, %v; want %s", step.name, st, err, step.want)
		}
	}

	pid := v.Pid()
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.ExitErr(); err != nil {
		t.Fatalf("QEMU did not quit cleanly: %v", err)
	}
	if !processGone(pid) {
		t.Fatalf("qemu pid %d still exists", pid)
	}
	for _, p := range []string{filepath.Join(cfg.StateDir, agentSocketName), filepath.Join(cfg.StateDir, qmpSocketName), cfg.StateDir} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind (stat: %v)", p, err)
		}
	}
	if n := openFDs(t); n != fds {
		t.Fatalf("%d fds open before Start, %d after Stop", fds, n)
	}
}
