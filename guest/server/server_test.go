package server

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/joeyrt/joey/agent"
	"github.com/joeyrt/joey/agent/protocol"
)

type harness struct {
	c        *agent.Client
	ctrs     *fakeContainers
	net      *fakeNetwork
	root     string
	oom      chan string
	poweredM sync.Mutex
	powered  bool
	mountsM  sync.Mutex
	mounts   []string
	unmounts []string
	failAt   string
}

// newHarness serves a Server over a real ttRPC connection, so every test
// also proves the generated protocol code round-trips its messages.
func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{ctrs: newFakeContainers(), net: &fakeNetwork{}, root: t.TempDir(), oom: make(chan string, 1)}
	srv := New(Config{
		Containers: h.ctrs,
		Network:    h.net,
		OOM:        h.oom,
		Root:       h.root,
		PowerOff: func() {
			h.poweredM.Lock()
			h.powered = true
			h.poweredM.Unlock()
		},
		Mount: func(source, target, fstype string, flags uintptr, data string) error {
			h.mountsM.Lock()
			defer h.mountsM.Unlock()
			if source == h.failAt {
				return os.ErrPermission
			}
			h.mounts = append(h.mounts, fstype+":"+source+":"+strings.TrimPrefix(target, h.root)+":"+data)
			return nil
		},
		Unmount: func(target string) error {
			h.mountsM.Lock()
			defer h.mountsM.Unlock()
			h.unmounts = append(h.unmounts, strings.TrimPrefix(target, h.root))
			return nil
		},
	})
	ts, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	protocol.RegisterAgentService(ts, srv)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go ts.Serve(context.Background(), l)
	t.Cleanup(func() { ts.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := agent.Connect(ctx, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h.c = c
	return h
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error = %v (code %v), want code %v", err, status.Code(err), code)
	}
}

func specJSON(t *testing.T, terminal bool) []byte {
	t.Helper()
	b, err := json.Marshal(&specs.Spec{Version: specs.Version, Root: &specs.Root{Path: "/run/joey/shared/c1/rootfs"},
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/", Terminal: terminal}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckAndGuestDetailsDescribeTheAgent(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	resp, err := h.c.Check(ctx, &protocol.CheckRequest{})
	if err != nil || resp.Version == "" || resp.UptimeSeconds < 0 {
		t.Fatalf("Check = %v, %v", resp, err)
	}
	os.MkdirAll(filepath.Join(h.root, "sys/devices/system/cpu"), 0o755)
	os.WriteFile(filepath.Join(h.root, "sys/devices/system/cpu/online"), []byte("0-2,5\n"), 0o644)
	d, err := h.c.GuestDetails(ctx, &protocol.GuestDetailsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.OnlineCpus != 4 || d.KernelRelease == "" || d.MemoryTotalBytes == 0 || !slices.Contains(d.Filesystems, "proc") {
		t.Fatalf("GuestDetails = %+v", d)
	}
}

func TestCreateSandboxWritesDNSSetsSysctlsAndMountsStorages(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	sysctl := filepath.Join(h.root, "proc/sys/net/ipv4/ip_forward")
	os.MkdirAll(filepath.Dir(sysctl), 0o755)
	os.WriteFile(sysctl, []byte("0"), 0o644)
	_, err := h.c.CreateSandbox(ctx, &protocol.CreateSandboxRequest{
		SandboxId: "sb1",
		Dns:       []string{"nameserver 10.0.0.53", "search pod.local"},
		Sysctls:   map[string]string{"net.ipv4.ip_forward": "1"},
		Storages: []*protocol.Storage{
			{Driver: "9p", Source: "joeyshare", MountPoint: "/run/joey/shared"},
			{Driver: "tmpfs", MountPoint: "/run/joey/scratch", Options: []string{"size=1m", "nosuid"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(h.root, "etc/resolv.conf")); string(b) != "nameserver 10.0.0.53\nsearch pod.local\n" {
		t.Fatalf("resolv.conf = %q", b)
	}
	if b, _ := os.ReadFile(sysctl); string(b) != "1" {
		t.Fatalf("ip_forward = %q", b)
	}
	want := []string{
		"9p:joeyshare:/run/joey/shared:trans=virtio,version=9p2000.L,msize=262144,cache=mmap",
		"tmpfs:tmpfs:/run/joey/scratch:size=1m",
	}
	if !slices.Equal(h.mounts, want) {
		t.Fatalf("mounts = %q, want %q", h.mounts, want)
	}
	_, err = h.c.CreateSandbox(ctx, &protocol.CreateSandboxRequest{SandboxId: "sb2"})
	wantCode(t, err, codes.AlreadyExists)

	if _, err := h.c.DestroySandbox(ctx, &protocol.DestroySandboxRequest{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(h.unmounts, []string{"/run/joey/scratch", "/run/joey/shared"}) {
		t.Fatalf("unmounts = %q, want reverse mount order", h.unmounts)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.poweredM.Lock()
		done := h.powered
		h.poweredM.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("DestroySandbox did not power off")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCreateSandboxUndoesMountsWhenAStorageFails(t *testing.T) {
	h := newHarness(t)
	h.failAt = "bad"
	_, err := h.c.CreateSandbox(context.Background(), &protocol.CreateSandboxRequest{
		SandboxId: "sb1",
		Storages: []*protocol.Storage{
			{Driver: "9p", Source: "good", MountPoint: "/a"},
			{Driver: "9p", Source: "bad", MountPoint: "/b"},
		},
	})
	if err == nil || !strings.Contains(err.Error(), "storage 1") {
		t.Fatalf("error = %v, want one naming storage 1", err)
	}
	if !slices.Equal(h.unmounts, []string{"/a"}) {
		t.Fatalf("unmounts = %q, want [/a]", h.unmounts)
	}
	// The failed sandbox left no trace: a new one can be created.
	h.failAt = ""
	if _, err := h.c.CreateSandbox(context.Background(), &protocol.CreateSandboxRequest{SandboxId: "sb1"}); err != nil {
		t.Fatal(err)
	}
}

func TestCreateSandboxRejectsBadRequests(t *testing.T) {
	for name, req := range map[string]*protocol.CreateSandboxRequest{
		"no id":           {},
		"relative mount":  {SandboxId: "s", Storages: []*protocol.Storage{{Driver: "9p", Source: "x", MountPoint: "rel"}}},
		"unknown driver":  {SandboxId: "s", Storages: []*protocol.Storage{{Driver: "nfs", Source: "x", MountPoint: "/x"}}},
		"9p without tag":  {SandboxId: "s", Storages: []*protocol.Storage{{Driver: "9p", MountPoint: "/x"}}},
		"escaping sysctl": {SandboxId: "s", Sysctls: map[string]string{"../../etc/passwd": "x"}},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			_, err := h.c.CreateSandbox(context.Background(), req)
			wantCode(t, err, codes.InvalidArgument)
		})
	}
}

func TestContainerLifecycleOverTheWire(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, err := h.c.CreateContainer(ctx, &protocol.CreateContainerRequest{ContainerId: "c1", OciSpec: []byte("{nope")})
	wantCode(t, err, codes.InvalidArgument)
	if _, err := h.c.CreateContainer(ctx, &protocol.CreateContainerRequest{ContainerId: "c1", OciSpec: specJSON(t, false)}); err != nil {
		t.Fatal(err)
	}
	_, err = h.c.CreateContainer(ctx, &protocol.CreateContainerRequest{ContainerId: "c1", OciSpec: specJSON(t, false)})
	wantCode(t, err, codes.AlreadyExists)
	if _, err := h.c.StartContainer(ctx, &protocol.StartContainerRequest{ContainerId: "c1"}); err != nil {
		t.Fatal(err)
	}
	_, err = h.c.StartContainer(ctx, &protocol.StartContainerRequest{ContainerId: "nope"})
	wantCode(t, err, codes.NotFound)

	p, _ := h.ctrs.proc("c1", "")
	// The process's output must be written before the signal closes its
	// pipes, as a real process's output is before it dies.
	written := make(chan struct{})
	go func() {
		defer close(written)
		p.outW.Write([]byte("out\n"))
		p.errW.Write([]byte("err\n"))
	}()
	var stdout, stderr strings.Builder
	outDone := make(chan error, 2)
	go func() { outDone <- h.c.CopyOutput(ctx, "c1", "", agent.Stdout, &stdout) }()
	go func() { outDone <- h.c.CopyOutput(ctx, "c1", "", agent.Stderr, &stderr) }()

	go func() {
		h.c.CopyInput(ctx, "c1", "", strings.NewReader("hi\n"))
	}()
	buf := make([]byte, 3)
	if _, err := p.stdin.Read(buf); err != nil || string(buf) != "hi\n" {
		t.Fatalf("stdin got %q, %v", buf, err)
	}
	if _, err := p.stdin.Read(buf); err == nil {
		t.Fatal("stdin was not closed after the input ended")
	}

	<-written
	if _, err := h.c.SignalProcess(ctx, &protocol.SignalProcessRequest{ContainerId: "c1", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-outDone; err != nil {
			t.Fatal(err)
		}
	}
	if stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	w, err := h.c.WaitProcess(ctx, &protocol.WaitProcessRequest{ContainerId: "c1"})
	if err != nil || w.Status != 137 || w.ExitedAtUnixNano != time.Unix(1700000000, 0).UnixNano() {
		t.Fatalf("WaitProcess = %v, %v", w, err)
	}
	_, err = h.c.SignalProcess(ctx, &protocol.SignalProcessRequest{ContainerId: "c1", Signal: 99})
	wantCode(t, err, codes.InvalidArgument)

	if _, err := h.c.RemoveContainer(ctx, &protocol.RemoveContainerRequest{ContainerId: "c1"}); err != nil {
		t.Fatal(err)
	}
	_, err = h.c.ReadStdout(ctx, &protocol.ReadStreamRequest{ContainerId: "c1"})
	wantCode(t, err, codes.NotFound)
}

func TestExecIsReleasedOnceWaitedAndDrained(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.c.CreateContainer(ctx, &protocol.CreateContainerRequest{ContainerId: "c1", OciSpec: specJSON(t, false)}); err != nil {
		t.Fatal(err)
	}
	proc, _ := json.Marshal(&specs.Process{Args: []string{"echo", "hi"}, Cwd: "/", Terminal: true})
	_, err := h.c.ExecProcess(ctx, &protocol.ExecProcessRequest{ContainerId: "c1", Process: proc})
	wantCode(t, err, codes.InvalidArgument)
	if _, err := h.c.ExecProcess(ctx, &protocol.ExecProcessRequest{ContainerId: "c1", ExecId: "e1", Process: proc}); err != nil {
		t.Fatal(err)
	}
	// With a terminal there is no separate stderr: it reads as ended.
	r, err := h.c.ReadStderr(ctx, &protocol.ReadStreamRequest{ContainerId: "c1", ExecId: "e1"})
	if err != nil || !r.Eof || len(r.Data) != 0 {
		t.Fatalf("ReadStderr on a terminal = %v, %v", r, err)
	}
	if _, err := h.c.TtyWinResize(ctx, &protocol.TtyWinResizeRequest{ContainerId: "c1", ExecId: "e1", Rows: 40, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	_, err = h.c.TtyWinResize(ctx, &protocol.TtyWinResizeRequest{ContainerId: "c1", ExecId: "e1", Rows: 1 << 20})
	wantCode(t, err, codes.InvalidArgument)

	p, _ := h.ctrs.proc("c1", "e1")
	go p.outW.Write([]byte("hi\n"))
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err = h.c.ReadStdout(rctx, &protocol.ReadStreamRequest{ContainerId: "c1", ExecId: "e1"})
	if err != nil || string(r.Data) != "hi\n" {
		t.Fatalf("ReadStdout = %v, %v", r, err)
	}
	h.c.SignalProcess(ctx, &protocol.SignalProcessRequest{ContainerId: "c1", ExecId: "e1", Signal: 9})
	if _, err := h.c.WaitProcess(ctx, &protocol.WaitProcessRequest{ContainerId: "c1", ExecId: "e1"}); err != nil {
		t.Fatal(err)
	}
	if h.ctrs.wasDeleted("c1/e1") {
		t.Fatal("exec released before its output was read to the end")
	}
	r, err = h.c.ReadStdout(ctx, &protocol.ReadStreamRequest{ContainerId: "c1", ExecId: "e1"})
	if err != nil || !r.Eof {
		t.Fatalf("final ReadStdout = %v, %v", r, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !h.ctrs.wasDeleted("c1/e1") {
		if time.Now().After(deadline) {
			t.Fatal("exec not released after wait and drain")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !slices.Contains(h.ctrs.calls, "resize c1/e1 40x100") {
		t.Fatalf("calls = %q", h.ctrs.calls)
	}
}

func TestReadStdoutHonoursTheCallDeadline(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.c.CreateContainer(ctx, &protocol.CreateContainerRequest{ContainerId: "c1", OciSpec: specJSON(t, false)})
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err := h.c.ReadStdout(rctx, &protocol.ReadStreamRequest{ContainerId: "c1"})
	if err == nil {
		t.Fatal("ReadStdout with no output returned instead of waiting")
	}
}

func TestResourceCallsReachTheContainerLayer(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.c.CreateContainer(ctx, &protocol.CreateContainerRequest{ContainerId: "c1", OciSpec: specJSON(t, false)})
	if _, err := h.c.PauseContainer(ctx, &protocol.PauseContainerRequest{ContainerId: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.ResumeContainer(ctx, &protocol.ResumeContainerRequest{ContainerId: "c1"}); err != nil {
		t.Fatal(err)
	}
	res, _ := json.Marshal(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(42))}})
	if _, err := h.c.UpdateContainer(ctx, &protocol.UpdateContainerRequest{ContainerId: "c1", Resources: res}); err != nil {
		t.Fatal(err)
	}
	_, err := h.c.UpdateContainer(ctx, &protocol.UpdateContainerRequest{ContainerId: "c1", Resources: []byte("[")})
	wantCode(t, err, codes.InvalidArgument)
	ps, err := h.c.ListProcesses(ctx, &protocol.ListProcessesRequest{ContainerId: "c1"})
	if err != nil || !slices.Equal(ps.Pids, []int32{1, 7}) {
		t.Fatalf("ListProcesses = %v, %v", ps, err)
	}
	for _, want := range []string{"pause c1", "resume c1", "update c1 pids=42"} {
		if !slices.Contains(h.ctrs.calls, want) {
			t.Fatalf("calls = %q, missing %q", h.ctrs.calls, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestStatsAreMappedToCgroupV2NamesAndUnits(t *testing.T) {
	h := newHarness(t)
	h.ctrs.stats = &cgroups.Stats{
		CpuStats: cgroups.CpuStats{
			CpuUsage:       cgroups.CpuUsage{TotalUsage: 5_000_000, UsageInUsermode: 3_000_000, UsageInKernelmode: 2_000_000},
			ThrottlingData: cgroups.ThrottlingData{Periods: 10, ThrottledPeriods: 2, ThrottledTime: 7_000},
		},
		MemoryStats: cgroups.MemoryStats{
			Usage: cgroups.MemoryData{Usage: 1 << 20, Limit: 1 << 30, MaxUsage: 2 << 20},
			Stats: map[string]uint64{"anon": 100, "file": 200, "oom_kill": 1},
		},
		PidsStats: cgroups.PidsStats{Current: 3, Limit: 100},
		BlkioStats: cgroups.BlkioStats{
			IoServiceBytesRecursive: []cgroups.BlkioStatEntry{{Major: 254, Minor: 0, Op: "Read", Value: 4096}, {Major: 254, Minor: 0, Op: "Write", Value: 512}},
			IoServicedRecursive:     []cgroups.BlkioStatEntry{{Major: 254, Minor: 0, Op: "Read", Value: 2}},
		},
	}
	st, err := h.c.StatsContainer(context.Background(), &protocol.StatsContainerRequest{ContainerId: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Cpu.UsageUsec != 5000 || st.Cpu.UserUsec != 3000 || st.Cpu.SystemUsec != 2000 || st.Cpu.NrThrottled != 2 || st.Cpu.ThrottledUsec != 7 {
		t.Fatalf("cpu = %+v", st.Cpu)
	}
	if st.Memory.Usage != 1<<20 || st.Memory.UsageLimit != 1<<30 || st.Memory.Anon != 100 || st.Memory.File != 200 || st.Memory.OomKill != 1 {
		t.Fatalf("memory = %+v", st.Memory)
	}
	if st.Pids.Current != 3 || st.Pids.Limit != 100 {
		t.Fatalf("pids = %+v", st.Pids)
	}
	if len(st.Io) != 1 || st.Io[0].Rbytes != 4096 || st.Io[0].Wbytes != 512 || st.Io[0].Rios != 2 {
		t.Fatalf("io = %+v", st.Io)
	}
}

func TestGetOOMEventDeliversTheContainer(t *testing.T) {
	h := newHarness(t)
	h.oom <- "c7"
	ev, err := h.c.GetOOMEvent(context.Background(), &protocol.GetOOMEventRequest{})
	if err != nil || ev.ContainerId != "c7" {
		t.Fatalf("GetOOMEvent = %v, %v", ev, err)
	}
}

func TestNetworkCallsAreDelegated(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, err := h.c.UpdateInterface(ctx, &protocol.UpdateInterfaceRequest{})
	wantCode(t, err, codes.InvalidArgument)
	in := &protocol.Interface{Name: "eth0", HwAddr: "02:00:00:00:00:01", Mtu: 1500, Up: true,
		Addresses: []*protocol.IPAddress{{Address: "10.4.0.7", PrefixLen: 24}}}
	if _, err := h.c.UpdateInterface(ctx, &protocol.UpdateInterfaceRequest{Interface: in}); err != nil {
		t.Fatal(err)
	}
	ifs, err := h.c.ListInterfaces(ctx, &protocol.ListInterfacesRequest{})
	if err != nil || len(ifs.Interfaces) != 1 || ifs.Interfaces[0].Addresses[0].Address != "10.4.0.7" {
		t.Fatalf("ListInterfaces = %v, %v", ifs, err)
	}
	routes := []*protocol.Route{{Gateway: "10.4.0.1", Device: "eth0", Family: 4}}
	if _, err := h.c.UpdateRoutes(ctx, &protocol.UpdateRoutesRequest{Routes: routes}); err != nil {
		t.Fatal(err)
	}
	rs, err := h.c.ListRoutes(ctx, &protocol.ListRoutesRequest{})
	if err != nil || len(rs.Routes) != 1 || rs.Routes[0].Gateway != "10.4.0.1" {
		t.Fatalf("ListRoutes = %v, %v", rs, err)
	}
	if _, err := h.c.AddARPNeighbors(ctx, &protocol.AddARPNeighborsRequest{Neighbors: []*protocol.Neighbor{{Ip: "10.4.0.1", HwAddr: "02:00:00:00:00:02", Device: "eth0"}}}); err != nil {
		t.Fatal(err)
	}
	if len(h.net.neighs) != 1 {
		t.Fatalf("neighbours = %v", h.net.neighs)
	}
}

func TestOnlineCPUMemOnlinesOfflineCPUsAndMemory(t *testing.T) {
	h := newHarness(t)
	sys := filepath.Join(h.root, "sys/devices/system")
	for path, content := range map[string]string{
		"cpu/online":                 "0\n",
		"cpu/cpu1/online":            "0\n",
		"cpu/cpu2/online":            "0\n",
		"memory/memory0/online":      "1\n",
		"memory/memory1/online":      "0\n",
		"memory/memory_tiering/none": "",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(sys, path)), 0o755)
		os.WriteFile(filepath.Join(sys, path), []byte(content), 0o644)
	}
	resp, err := h.c.OnlineCPUMem(context.Background(), &protocol.OnlineCPUMemRequest{NbCpus: 2})
	if err != nil {
		t.Fatal(err)
	}
	if resp.OnlineCpus != 2 || resp.OnlineMemoryBlocks != 2 {
		t.Fatalf("OnlineCPUMem = %+v", resp)
	}
	if b, _ := os.ReadFile(filepath.Join(sys, "cpu/cpu1/online")); string(b) != "1" {
		t.Fatalf("cpu1 online = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(sys, "cpu/cpu2/online")); string(b) != "0\n" {
		t.Fatalf("cpu2 was onlined beyond the request: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(sys, "memory/memory1/online")); string(b) != "1" {
		t.Fatalf("memory1 online = %q", b)
	}
	_, err = h.c.OnlineCPUMem(context.Background(), &protocol.OnlineCPUMemRequest{NbCpus: 9, CpuOnly: true})
	wantCode(t, err, codes.InvalidArgument)
}

func TestCopyFileWritesAtomicallyWithModeAndRejectsRelativePaths(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, err := h.c.CopyFile(ctx, &protocol.CopyFileRequest{Path: "etc/hosts", Data: []byte("x")})
	wantCode(t, err, codes.InvalidArgument)
	_, err = h.c.CopyFile(ctx, &protocol.CopyFileRequest{Path: "/etc/../hosts", Data: []byte("x")})
	wantCode(t, err, codes.InvalidArgument)
	_, err = h.c.CopyFile(ctx, &protocol.CopyFileRequest{Path: "/etc/joey/hosts", Data: []byte("127.0.0.1 pod\n"), FileMode: 0o600, Uid: -1, Gid: -1})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(h.root, "etc/joey/hosts")
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "127.0.0.1 pod\n" {
		t.Fatalf("file = %q, %v", b, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v", fi.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(h.root, "etc/joey/.*tmp*")); len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}
