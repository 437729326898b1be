package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/joeyrt/joey/test/cnitest"
)

// TestPodNetworkFromCNINamespace runs two pods the way CRI does: CNI's
// bridge plugin configures each pod's network namespace first, and the
// spec names it (`ctr run --with-ns network:PATH`). The containers in the
// VMs get the CNI addresses and routes, talk to the node side and to each
// other, serve a port the node reaches, and once the pods are gone their
// namespaces are exactly as CNI left them, so CNI DEL works.
func TestPodNetworkFromCNINamespace(t *testing.T) {
	e := newEnv(t)
	node := cnitest.NewNode(t)
	p1, p2 := node.AddPod(t, "net1"), node.AddPod(t, "net2")
	before := map[*cnitest.Pod]string{p1: cnitest.Snapshot(t, p1.Name), p2: cnitest.Snapshot(t, p2.Name)}

	// A server on the node side of the bridge.
	l, err := cnitest.Listen(node.NetNS, cnitest.Gateway+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello-from-node")
	})}
	go srv.Serve(l)
	defer srv.Close()

	serve := "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www"
	for _, p := range []*cnitest.Pod{p1, p2} {
		e.runDetached(t, p.ID, []string{"--with-ns", "network:" + p.NetNS}, "sh", "-c", serve)
		// The snapshot sees what joey adds: the final comparison means something.
		if during := cnitest.Snapshot(t, p.Name); !strings.Contains(during, "qdisc ingress") || !strings.Contains(during, "tap0_joey") {
			t.Errorf("pod %s's namespace while the VM runs has no TAP and ingress qdisc:\n%s", p.ID, during)
		}
	}

	t.Run("the container has its CNI address and reaches the node", func(t *testing.T) {
		script := fmt.Sprintf("ip -o -4 addr show eth0; ip route; ping -c 2 -W 10 %s >/dev/null && echo ping-ok; %s",
			cnitest.Gateway, httpGet(l.Addr().String()))
		out := e.execIn(t, p1.ID, "x1", script)
		for _, want := range []string{" " + p1.IP + "/24 ", "default via " + cnitest.Gateway, "ping-ok", "hello-from-node"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("the node reaches the pod's port", func(t *testing.T) {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return cnitest.Dial(node.NetNS, addr, 20*time.Second)
			},
		}}
		resp, err := client.Get("http://" + net.JoinHostPort(p1.IP, "8080") + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "hello-from-pod" {
			t.Errorf("GET from the node: %s %q", resp.Status, body)
		}
	})
	t.Run("two pods reach each other", func(t *testing.T) {
		out := e.execIn(t, p2.ID, "x2", httpGet(net.JoinHostPort(p1.IP, "8080")))
		if !strings.HasSuffix(strings.TrimSpace(out), "\nhello-from-pod") {
			t.Errorf("pod 2 got %q from pod 1", out)
		}
	})

	for _, p := range []*cnitest.Pod{p1, p2} {
		e.removeTask(t, p.ID)
		if after := cnitest.Snapshot(t, p.Name); after != before[p] {
			t.Errorf("pod %s's namespace changed:\nbefore:\n%s\nafter:\n%s", p.ID, before[p], after)
		}
		if err := p.Del(testContext(t, time.Minute)); err != nil {
			t.Errorf("CNI DEL after the pod is gone: %v", err)
		}
	}
}

// httpGet is a shell command that prints the response (headers and body)
// of an HTTP GET of / at addr. busybox's nc, not its wget: Debian's static
// busybox wget segfaults.
func httpGet(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 20 %s %s`, host, port)
}

// execIn runs a shell script in a running container and returns its
// stdout; a failure to run it fails the test.
func (e *env) execIn(t testing.TB, id, execID, script string) string {
	t.Helper()
	began := time.Now()
	out, errOut, err := e.d.Ctr(testContext(t, 2*time.Minute), "task", "exec", "--exec-id", execID, id, "sh", "-c", script)
	t.Logf("exec in %s: %v", id, time.Since(began).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("exec in %s: %v; stdout %q, stderr %q", id, err, out, errOut)
	}
	return out
}

// TestTaskPidIsNotInTheHostNetworkNamespace: for a container with a new
// network namespace (the default of `ctr run`, and what `ctr run --cni`
// gives) the task's pid, where ctr --cni would run CNI between Create and
// Start, lives in a namespace of the sandbox's own, never the host's.
func TestTaskPidIsNotInTheHostNetworkNamespace(t *testing.T) {
	e := newEnv(t)
	e.runDetached(t, "ownns", nil, "sleep", "600")
	defer e.removeTask(t, "ownns")
	pid, status := e.taskStatus(t, "ownns")
	if status != "RUNNING" {
		t.Fatalf("task ownns is %q", status)
	}
	taskNS, err := os.Readlink("/proc/" + pid + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if taskNS == hostNS {
		t.Errorf("task pid %s is in the host's network namespace %s", pid, hostNS)
	}
}
