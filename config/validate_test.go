package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidateNamesKeyValueAndAllowedValues(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // the whole message, file included
	}{
		{"machine", func(c *Config) { c.Hypervisor.QEMU.Machine = "virt" },
			`config /etc/joey/config.toml: hypervisor.qemu.machine = "virt": want one of microvm, q35, pc`},
		{"hypervisor", func(c *Config) { c.Runtime.Hypervisor = "firecracker" },
			`config /etc/joey/config.toml: runtime.hypervisor = "firecracker": want one of qemu, builtin`},
		{"relative state dir", func(c *Config) { c.Runtime.StateDir = "run/joey" },
			`config /etc/joey/config.toml: runtime.state_dir = "run/joey": want an absolute path`},
		{"log level", func(c *Config) { c.Runtime.LogLevel = "verbose" },
			`config /etc/joey/config.toml: runtime.log_level = "verbose": want one of trace, debug, info, warn, error`},
		{"network model", func(c *Config) { c.Runtime.NetworkModel = "bridge" },
			`config /etc/joey/config.toml: runtime.network_model = "bridge": want one of tcfilter, macvtap`},
		{"unknown annotation", func(c *Config) {
			c.Runtime.DefaultAnnotationsAllowed = []string{AnnotationVCPUs, "io.joey.config.kernel"}
		},
			`config /etc/joey/config.toml: runtime.default_annotations_allowed[1] = "io.joey.config.kernel": want one of io.joey.config.vcpus, io.joey.config.memory_mib`},
		{"relative image dir", func(c *Config) { c.Image.Dir = "image" },
			`config /etc/joey/config.toml: image.dir = "image": want an absolute path`},
		{"relative kernel", func(c *Config) { c.Image.Kernel = "vmlinux" },
			`config /etc/joey/config.toml: image.kernel = "vmlinux": want an absolute path, or "" for the default`},
		{"relative initrd", func(c *Config) { c.Image.Initrd = "./initrd.img" },
			`config /etc/joey/config.toml: image.initrd = "./initrd.img": want an absolute path, or "" for the default`},
		{"empty kernel param", func(c *Config) { c.Image.KernelParams = []string{"quiet", ""} },
			`config /etc/joey/config.toml: image.kernel_params[1] = "": want a non-empty string without control characters`},
		{"newline in kernel param", func(c *Config) { c.Image.KernelParams = []string{"a\nb"} },
			`config /etc/joey/config.toml: image.kernel_params[0] = "a\nb": want a non-empty string without control characters`},
		{"empty qemu path", func(c *Config) { c.Hypervisor.QEMU.Path = "" },
			`config /etc/joey/config.toml: hypervisor.qemu.path = "": want a program name looked up on PATH, or an absolute path`},
		{"relative qemu path", func(c *Config) { c.Hypervisor.QEMU.Path = "bin/qemu" },
			`config /etc/joey/config.toml: hypervisor.qemu.path = "bin/qemu": want a program name looked up on PATH, or an absolute path`},
		{"accel", func(c *Config) { c.Hypervisor.QEMU.Accel = "hvf" },
			`config /etc/joey/config.toml: hypervisor.qemu.accel = "hvf": want one of auto, kvm, tcg`},
		{"no vcpus", func(c *Config) { c.Hypervisor.QEMU.VCPUs = 0 },
			`config /etc/joey/config.toml: hypervisor.qemu.vcpus = 0: want 1 to 255`},
		{"max below vcpus", func(c *Config) { c.Hypervisor.QEMU.VCPUs, c.Hypervisor.QEMU.MaxVCPUs = 4, 2 },
			`config /etc/joey/config.toml: hypervisor.qemu.max_vcpus = 2: want 0 (same as vcpus), or vcpus (4) to 255`},
		{"max too high", func(c *Config) { c.Hypervisor.QEMU.MaxVCPUs = 256 },
			`config /etc/joey/config.toml: hypervisor.qemu.max_vcpus = 256: want 0 (same as vcpus), or vcpus (1) to 255`},
		{"small memory", func(c *Config) { c.Hypervisor.QEMU.MemoryMiB = 64 },
			`config /etc/joey/config.toml: hypervisor.qemu.memory_mib = 64: want at least 128`},
		{"shared fs", func(c *Config) { c.Hypervisor.QEMU.SharedFS = "nfs" },
			`config /etc/joey/config.toml: hypervisor.qemu.shared_fs = "nfs": want one of 9p, virtio-fs`},
		{"agent channel", func(c *Config) { c.Hypervisor.QEMU.AgentChannel = "tcp" },
			`config /etc/joey/config.toml: hypervisor.qemu.agent_channel = "tcp": want one of serial, vsock`},
		{"builtin agent channel", func(c *Config) { c.Hypervisor.Builtin.AgentChannel = "pipe" },
			`config /etc/joey/config.toml: hypervisor.builtin.agent_channel = "pipe": want one of serial, vsock`},
		{"NUL in extra arg", func(c *Config) { c.Hypervisor.QEMU.ExtraArgs = []string{"-d", "a\x00b"} },
			`config /etc/joey/config.toml: hypervisor.qemu.extra_args[1] = "a\x00b": want a string without NUL bytes`},
		{"builtin vcpus", func(c *Config) { c.Hypervisor.Builtin.VCPUs = 1000 },
			`config /etc/joey/config.toml: hypervisor.builtin.vcpus = 1000: want 1 to 255`},
		{"builtin memory", func(c *Config) { c.Hypervisor.Builtin.MemoryMiB = -1 },
			`config /etc/joey/config.toml: hypervisor.builtin.memory_mib = -1: want at least 128`},
		{"zero dial timeout", func(c *Config) { c.Agent.DialTimeout.Duration = 0 },
			`config /etc/joey/config.toml: agent.dial_timeout = "0s": want a positive duration, such as "60s"`},
		{"agent log level", func(c *Config) { c.Agent.LogLevel = "loud" },
			`config /etc/joey/config.toml: agent.log_level = "loud": want one of trace, debug, info, warn, error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Path = "/etc/joey/config.toml"
			tt.change(c)
			ps := problemsIn(t, c.Validate())
			if len(ps) != 1 || ps[0].Error() != tt.want {
				t.Errorf("got %d problems:\n%v\nwant exactly\n%s", len(ps), c.Validate(), tt.want)
			}
			if len(ps) == 1 && !strings.HasPrefix(ps[0].Msg, ps[0].Key+" = ") {
				t.Errorf("Key %q does not match the message %q", ps[0].Key, ps[0].Msg)
			}
		})
	}
}

func TestValidateAcceptsEveryAllowedValue(t *testing.T) {
	for _, m := range machines {
		for _, a := range accels {
			c := Default()
			c.Hypervisor.QEMU.Machine, c.Hypervisor.QEMU.Accel = m, a
			c.Hypervisor.QEMU.SharedFS, c.Hypervisor.QEMU.AgentChannel = SharedFSVirtioFS, AgentChannelVsock
			c.Runtime.Hypervisor, c.Runtime.NetworkModel = HypervisorBuiltin, NetworkMacvtap
			c.Hypervisor.QEMU.VCPUs, c.Hypervisor.QEMU.MaxVCPUs = 2, 8
			c.Image.Kernel, c.Image.KernelParams = "/boot/vmlinux", []string{`foo="a b"`}
			c.Agent.DialTimeout = Duration{Duration: time.Second}
			if err := c.Validate(); err != nil {
				t.Errorf("machine %s accel %s: %v", m, a, err)
			}
		}
	}
}

func TestValidateOfDefaultsNamesNoFile(t *testing.T) {
	c := Default()
	c.Runtime.LogLevel = "x"
	if got := c.Validate().Error(); !strings.HasPrefix(got, "config: runtime.log_level") {
		t.Errorf("got %q, want it to start with \"config: runtime.log_level\"", got)
	}
}
