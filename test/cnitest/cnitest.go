// Package cnitest gives tests a pod network the way a CNI runtime makes
// one, without touching the host's own network namespace: a "node"
// network namespace the test creates holds the bridge (the CNI bridge
// plugin runs inside it), and each pod gets a network namespace of its own
// that the bridge and host-local plugins configure, invoked through the
// CNI_* environment protocol as any CNI runtime invokes them. Debian
// installs the plugins in /usr/lib/cni.
package cnitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/joeyrt/joey/internal/testutil"
)

// PluginDirs are where CNI plugins are looked for, Debian's first.
var PluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// Subnet is the pod network: the bridge is its .1, pods get the next ones.
const (
	Subnet  = "192.168.77.0/24"
	Gateway = "192.168.77.1"
	bridge  = "joeybr0"
	netName = "joeytest"
)

// Node is the "host side" of a pod network: a network namespace holding
// the bridge that the pods' veths hang from.
type Node struct {
	// NetNS is the path of the node's network namespace.
	NetNS     string
	name      string
	pluginDir string
	dataDir   string
}

// Pod is one pod's network namespace as CNI left it.
type Pod struct {
	ID    string
	Name  string // the netns name under /var/run/netns; "" for AddPodAt's
	NetNS string // its path
	IP    string
	node  *Node
	added bool
}

// RequirePlugins skips (or, with JOEY_REQUIRE_ALL=1, fails) t unless the
// bridge and host-local plugins are installed, and returns their
// directory.
func RequirePlugins(t testing.TB) string {
	t.Helper()
	for _, dir := range PluginDirs {
		ok := true
		for _, p := range []string{"bridge", "host-local"} {
			if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
				ok = false
			}
		}
		if ok {
			return dir
		}
	}
	testutil.Unavailable(t, fmt.Sprintf("CNI plugins bridge and host-local not found in %v: apt-get install containernetworking-plugins", PluginDirs))
	return ""
}

// NewNode makes the node namespace; the test's cleanup deletes it (and
// with it the bridge and the pods' veth ends).
func NewNode(t testing.TB) *Node {
	t.Helper()
	n := &Node{pluginDir: RequirePlugins(t), name: nsName("node"), dataDir: t.TempDir()}
	n.NetNS = addNetNS(t, n.name)
	// The node's own loopback, for servers the test runs there.
	if out, err := exec.Command("ip", "-n", n.name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v: %s", n.name, err, out)
	}
	return n
}

var nsSeq atomic.Int64

// nsName is unique on the host: test binaries run side by side.
func nsName(role string) string {
	return fmt.Sprintf("joeyt-%d-%s%d", os.Getpid(), role, nsSeq.Add(1))
}

// addNetNS creates /var/run/netns/name with `ip netns add` and deletes it
// when the test ends.
func addNetNS(t testing.TB, name string) string {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return "/var/run/netns/" + name
}

func (n *Node) conf() []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"type":"bridge","bridge":%q,"isGateway":true,"isDefaultGateway":true,"ipMasq":false,`+
		`"ipam":{"type":"host-local","subnet":%q,"gateway":%q,"dataDir":%q}}`, netName, bridge, Subnet, Gateway, n.dataDir))
}

// AddPod makes a pod network namespace and runs CNI ADD for it; the test's
// cleanup runs DEL (unless the test did) and deletes the namespace.
func (n *Node) AddPod(t testing.TB, id string) *Pod {
	t.Helper()
	name := nsName("pod")
	p := n.AddPodAt(t, id, addNetNS(t, name))
	p.Name = name
	return p
}

// AddPodAt runs CNI ADD for a network namespace someone else made (as
// `ctr run --cni` does with the task's namespace); the test's cleanup runs
// DEL unless the test did.
func (n *Node) AddPodAt(t testing.TB, id, netnsPath string) *Pod {
	t.Helper()
	p := &Pod{ID: id, NetNS: netnsPath, node: n}
	out, err := n.plugin(context.Background(), "ADD", p)
	if err != nil {
		t.Fatalf("CNI ADD for %s: %v", id, err)
	}
	p.added = true
	t.Cleanup(func() {
		if p.added {
			if _, err := n.plugin(context.Background(), "DEL", p); err != nil {
				t.Errorf("CNI DEL for %s: %v", id, err)
			}
		}
	})
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
		t.Fatalf("CNI ADD for %s: result %s: %v", id, out, err)
	}
	ip, _, err := net.ParseCIDR(res.IPs[0].Address)
	if err != nil {
		t.Fatalf("CNI ADD for %s: address %q: %v", id, res.IPs[0].Address, err)
	}
	p.IP = ip.String()
	return p
}

// Del runs CNI DEL for the pod.
func (p *Pod) Del(ctx context.Context) error {
	if _, err := p.node.plugin(ctx, "DEL", p); err != nil {
		return err
	}
	p.added = false
	return nil
}

// plugin runs the bridge plugin with command inside the node namespace
// (where it makes the bridge and the veths' host ends) for pod p.
func (n *Node) plugin(ctx context.Context, command string, p *Pod) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.name, filepath.Join(n.pluginDir, "bridge"))
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command,
		"CNI_CONTAINERID="+p.ID,
		"CNI_NETNS="+p.NetNS,
		"CNI_IFNAME=eth0",
		"CNI_PATH="+n.pluginDir,
	)
	cmd.Stdin = bytes.NewReader(n.conf())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("bridge plugin %s: %v: %s%s", command, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// Listen opens a TCP listener on addr inside the network namespace at
// path. The socket stays in that namespace whichever thread uses it.
func Listen(path, addr string) (net.Listener, error) {
	var l net.Listener
	err := InNetNS(path, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// Dial connects to addr from inside the network namespace at path.
func Dial(path, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := InNetNS(path, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// InNetNS runs fn on a thread that has entered the network namespace at
// path. The thread is never handed back to other goroutines: it ends
// with fn's goroutine, so no other code runs in the namespace by mistake.
func InNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the runtime discards the thread on exit.
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- fmt.Errorf("open %s: %w", path, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Snapshot describes a namespace's links and qdiscs, to compare before
// and after something ran there.
func Snapshot(t testing.TB, name string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"-n", name, "-o", "link", "show"}, {"-n", name, "-o", "addr", "show"}} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			// Link state and counters change with traffic; names, kinds,
			// MACs and addresses must not.
			// -o marks line breaks with a backslash.
			f := strings.Fields(strings.ReplaceAll(line, "\\", " "))
			var keep []string
			for i := 0; i < len(f); i++ {
				switch f[i] {
				case "state", "qlen", "valid_lft", "preferred_lft":
					i++
					continue
				}
				if strings.HasPrefix(f[i], "<") {
					continue // flags: UP, LOWER_UP, ...
				}
				keep = append(keep, f[i])
			}
			b.WriteString(strings.Join(keep, " ") + "\n")
		}
	}
	out, err := exec.Command("tc", "-n", name, "qdisc", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("tc qdisc show in %s: %v: %s", name, err, out)
	}
	b.Write(out)
	return b.String()
}
