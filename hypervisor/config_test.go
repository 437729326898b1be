package hypervisor

import (
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
)

func validConfig() Config {
	return Config{
		ID:        "sb-1",
		VCPUs:     1,
		MemoryMiB: 256,
		Kernel:    "/k/vmlinux",
		StateDir:  "/run/joey/vm",
	}
}

func TestValidateAcceptsAValidConfig(t *testing.T) {
	c := validConfig()
	c.SharedFS = []SharedFS{{Tag: "share", Kind: SharedFS9P, HostPath: "/srv"}}
	c.Block = []BlockDevice{{ID: "disk0", Path: "/img"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesTheBadField(t *testing.T) {
	tap, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"no vcpus", func(c *Config) { c.VCPUs = 0 }, "hypervisor config: vcpus must be ≥ 1 (got 0)"},
		{"max below vcpus", func(c *Config) { c.VCPUs, c.MaxVCPUs = 2, 1 }, "max vcpus"},
		{"tiny memory", func(c *Config) { c.MemoryMiB = 1 }, "memory must be ≥ 64 MiB (got 1)"},
		{"no kernel", func(c *Config) { c.Kernel = "" }, "kernel is empty"},
		{"empty id", func(c *Config) { c.ID = "" }, `id ""`},
		{"id with slash", func(c *Config) { c.ID = "a/b" }, `id "a/b"`},
		{"param with space", func(c *Config) { c.KernelParams = []string{"a b"} }, `kernel params: "a b"`},
		{"bad accel", func(c *Config) { c.Accel = "hvf" }, `accel "hvf"`},
		{"relative state dir", func(c *Config) { c.StateDir = "run/vm" }, "state dir \"run/vm\" must be an absolute path"},
		{"long state dir", func(c *Config) { c.StateDir = "/" + strings.Repeat("x", 100) }, "unix sockets"},
		{"negative slots", func(c *Config) { c.HotplugSlots = -1 }, "hotplug slots"},
		{"bad channel kind", func(c *Config) { c.AgentChannel.Kind = "pipe" }, `agent channel: kind "pipe"`},
		{"vsock without cid", func(c *Config) { c.AgentChannel = AgentChannel{Kind: ChannelVsock, Port: 1024} }, "guest cid must be ≥ 3"},
		{"vsock without port", func(c *Config) { c.AgentChannel = AgentChannel{Kind: ChannelVsock, GuestCID: 3} }, "vsock port"},
		{"bad port name", func(c *Config) { c.AgentChannel.Name = "a b" }, "port name"},
		{"9p without path", func(c *Config) { c.SharedFS = []SharedFS{{Tag: "s", Kind: SharedFS9P}} }, "host path"},
		{"9p long tag", func(c *Config) {
			c.SharedFS = []SharedFS{{Tag: strings.Repeat("t", 32), Kind: SharedFS9P, HostPath: "/s"}}
		}, "1-31 bytes"},
		{"fs kind unknown", func(c *Config) { c.SharedFS = []SharedFS{{Tag: "s", Kind: "nfs"}} }, `kind "nfs"`},
		{"duplicate tag", func(c *Config) {
			c.SharedFS = []SharedFS{{Tag: "s", Kind: SharedFS9P, HostPath: "/a"}, {Tag: "s", Kind: SharedFS9P, HostPath: "/b"}}
		}, `tag "s" is used twice`},
		{"virtio-fs without shared memory", func(c *Config) {
			c.SharedFS = []SharedFS{{Tag: "s", Kind: SharedFSVirtioFS, Socket: "/v.sock"}}
		}, "set SharedMemory"},
		{"virtio-fs read-only", func(c *Config) {
			c.SharedMemory = true
			c.SharedFS = []SharedFS{{Tag: "s", Kind: SharedFSVirtioFS, Socket: "/v.sock", ReadOnly: true}}
		}, "start virtiofsd read-only"},
		{"block without path", func(c *Config) { c.Block = []BlockDevice{{ID: "d"}} }, `block "d": path`},
		{"block long id", func(c *Config) { c.Block = []BlockDevice{{ID: strings.Repeat("d", 21), Path: "/d"}} }, "block 0: id"},
		{"duplicate device id", func(c *Config) {
			c.Block = []BlockDevice{{ID: "d", Path: "/d"}}
			c.Net = []NetDevice{{ID: "d", TapFiles: []*os.File{tap}}}
		}, `net 0: id "d" is used twice`},
		{"net without tap", func(c *Config) { c.Net = []NetDevice{{ID: "n"}} }, "no tap file"},
		{"vhost count mismatch", func(c *Config) {
			c.Net = []NetDevice{{ID: "n", TapFiles: []*os.File{tap}, VhostFiles: []*os.File{tap, tap}}}
		}, "2 vhost files for 1 tap queues"},
		{"multicast mac", func(c *Config) {
			c.Net = []NetDevice{{ID: "n", TapFiles: []*os.File{tap}, MAC: net.HardwareAddr{1, 2, 3, 4, 5, 6}}}
		}, "unicast"},
		{"small mtu", func(c *Config) { c.Net = []NetDevice{{ID: "n", TapFiles: []*os.File{tap}, MTU: 10}} }, "mtu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted the config, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestGuestParamsTellTheAgentItsChannel(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"default serial", Config{}, []string{"joey.channel=serial:agent.0"}},
		{"named serial with console", Config{AgentChannel: AgentChannel{Name: "a.1"}, DebugConsole: true},
			[]string{"joey.channel=serial:a.1", "joey.debug_console=console.1"}},
		{"vsock", Config{AgentChannel: AgentChannel{Kind: ChannelVsock, GuestCID: 3, Port: 1024}}, []string{"joey.channel=vsock:1024"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.GuestParams(); !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCloseFilesClosesTapAndVhostFiles(t *testing.T) {
	open := func() *os.File {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	tap, vhost := open(), open()
	c := Config{Net: []NetDevice{{ID: "n", TapFiles: []*os.File{tap}, VhostFiles: []*os.File{vhost}}}}
	if err := c.CloseFiles(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{tap, vhost} {
		if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("%v still open (stat: %v)", f.Name(), err)
		}
	}
	if err := c.CloseFiles(); err != nil {
		t.Fatalf("second CloseFiles: %v", err)
	}
}
