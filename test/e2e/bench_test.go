package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/joeyrt/joey/test/cnitest"
)

// Throughput bench parameters: each side is sent ever larger streams until
// one takes benchMinDuration, so a fast and a slow path are both measured
// long enough and neither takes long.
const (
	benchPort        = "5001"
	benchFirstSize   = 8 << 20
	benchMaxSize     = 2 << 30
	benchMinDuration = 3 * time.Second
)

// benchReceiver is the receiver in both places: busybox nc serves every
// connection with `wc -c`, which reads the stream to its end and answers
// with the count, so the sender's clock stops when the receiver has
// everything, not when the sender's buffers took it.
var benchReceiver = []string{"nc", "-ll", "-p", benchPort, "-e", "wc", "-c"}

// BenchmarkPodTCPThroughput measures TCP throughput from the node side of a
// CNI bridge into a container in a joey VM (TAP, tc redirect, virtio-net,
// the guest's stack), and into a plain network namespace on the same
// bridge with the same receiver, and reports their ratio. Run it with
// `make bench`; it prints figures and asserts none (machines are noisy).
func BenchmarkPodTCPThroughput(b *testing.B) {
	e := newEnv(b)
	node := cnitest.NewNode(b)
	vmPod, plain := node.AddPod(b, "bench-vm"), node.AddPod(b, "bench-plain")

	e.runDetached(b, vmPod.ID, []string{"--with-ns", "network:" + vmPod.NetNS}, benchReceiver...)
	b.Cleanup(func() { e.removeTask(b, vmPod.ID) })
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		b.Fatalf("the plain namespace's receiver needs busybox: %v", err)
	}
	rx := exec.Command("ip", append([]string{"netns", "exec", plain.Name, busybox}, benchReceiver...)...)
	rx.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // nc forks per connection
	if err := rx.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		syscall.Kill(-rx.Process.Pid, syscall.SIGKILL)
		rx.Wait()
	})

	for range b.N {
		vm := measure(b, node, vmPod.IP)
		host := measure(b, node, plain.IP)
		b.Logf("host -> container in a joey VM:  %8.1f MB/s", vm/1e6)
		b.Logf("host -> plain network namespace: %8.1f MB/s", host/1e6)
		b.Logf("ratio VM / plain namespace:      %8.3f", vm/host)
		b.ReportMetric(vm/1e6, "vm-MB/s")
		b.ReportMetric(host/1e6, "netns-MB/s")
		b.ReportMetric(vm/host, "vm/netns")
	}
}

// measure streams to ip's receiver from the node namespace and returns
// bytes per second of the first stream that took benchMinDuration.
func measure(b *testing.B, node *cnitest.Node, ip string) float64 {
	b.Helper()
	addr := net.JoinHostPort(ip, benchPort)
	// The receiver may still be starting; the first stream also warms up.
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := stream(node, addr, 1<<20); err == nil {
			break
		} else if time.Now().After(deadline) {
			b.Fatalf("warm-up stream to %s: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for size := int64(benchFirstSize); ; size *= 2 {
		took, err := stream(node, addr, size)
		if err != nil {
			b.Fatalf("stream %d bytes to %s: %v", size, addr, err)
		}
		if took >= benchMinDuration || size >= benchMaxSize {
			b.Logf("%s: %d MiB in %v", addr, size>>20, took.Round(time.Millisecond))
			return float64(size) / took.Seconds()
		}
	}
}

// stream sends size bytes to addr from the node namespace, closes its
// sending side and waits for the receiver's byte count, which must match.
func stream(node *cnitest.Node, addr string, size int64) (time.Duration, error) {
	c, err := cnitest.Dial(node.NetNS, addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	began := time.Now()
	c.SetDeadline(began.Add(2 * time.Minute))
	if _, err := io.CopyBuffer(c, io.LimitReader(zeros{}, size), buf); err != nil {
		return 0, fmt.Errorf("send: %w", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, fmt.Errorf("close send side: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(began)
	if err != nil {
		return 0, fmt.Errorf("read the receiver's count: %w", err)
	}
	if got, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64); err != nil || got != size {
		return 0, fmt.Errorf("receiver counted %q, want %d", strings.TrimSpace(line), size)
	}
	return took, nil
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
