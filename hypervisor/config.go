package hypervisor

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Accel chooses how guest code runs.
type Accel string

const (
	// AccelAuto uses KVM when the host's KVM boots stock kernels, emulation
	// otherwise. The empty Accel means the same.
	AccelAuto Accel = "auto"
	AccelKVM  Accel = "kvm"
	AccelTCG  Accel = "tcg" // QEMU's emulator: slow, works everywhere
)

// ChannelKind is the transport of the agent channel.
type ChannelKind string

const (
	// ChannelSerial is a virtio-serial port; works on every host. The empty
	// ChannelKind means the same.
	ChannelSerial ChannelKind = "serial"
	// ChannelVsock is AF_VSOCK; QEMU needs /dev/vhost-vsock on the host,
	// the built-in VMM serves it in process.
	ChannelVsock ChannelKind = "vsock"
)

// SharedFSKind is the protocol of a shared directory.
type SharedFSKind string

const (
	SharedFS9P       SharedFSKind = "9p"
	SharedFSVirtioFS SharedFSKind = "virtio-fs"
)

const (
	// DefaultAgentPort is the virtio-serial port name of the agent channel.
	DefaultAgentPort = "agent.0"
	// DebugConsolePort is the virtio-serial port of the debug console.
	DebugConsolePort = "console.1"
	// MaxStateDirLen keeps StateDir/<socket name> within the 107 bytes a
	// unix socket path may have.
	MaxStateDirLen = 90
	// maxDeviceIDLen is what a virtio-blk serial can carry (20 bytes); net
	// devices share the limit so IDs mean the same everywhere.
	maxDeviceIDLen = 20
)

// Config describes a VM. It holds no VMM-specific notions: a driver maps it
// onto its own devices and may reject what it cannot do.
type Config struct {
	// ID names the VM in logs and process titles.
	ID string
	// VCPUs at boot, and MaxVCPUs the VM may grow to (0: VCPUs).
	VCPUs    int
	MaxVCPUs int
	// MemoryMiB is the guest RAM.
	MemoryMiB int
	// SharedMemory backs guest RAM with a shared mapping, which vhost-user
	// devices (virtio-fs) need.
	SharedMemory bool
	// Kernel to boot (an ELF vmlinux boots fastest, through PVH), its
	// Initrd, and KernelParams appended after the driver's own.
	Kernel       string
	Initrd       string
	KernelParams []string
	// Machine is a hint for drivers that have several machine types
	// ("microvm", "q35"); empty lets the driver choose.
	Machine string
	// Accel is "auto" (or empty), "kvm" or "tcg".
	Accel Accel
	// StateDir is the VM's private directory for sockets and runtime
	// files. Start creates it (it must not exist yet) and Stop removes it.
	StateDir string
	// ConsoleLog receives the guest's serial console; empty: no console.
	ConsoleLog string
	// AgentChannel is how the host reaches the guest agent.
	AgentChannel AgentChannel
	SharedFS     []SharedFS
	Block        []BlockDevice
	Net          []NetDevice
	// HotplugSlots reserves room for that many hot-added devices.
	HotplugSlots int
	// RNG gives the guest a virtio-rng fed by the host.
	RNG bool
	// DebugConsole adds a virtio-serial port named DebugConsolePort whose
	// host side is a unix socket in StateDir (see DebugConsoler).
	DebugConsole bool
}

// AgentChannel is the transport between host and guest agent.
type AgentChannel struct {
	Kind ChannelKind
	// Name of the virtio-serial port; empty means DefaultAgentPort.
	Name string
	// GuestCID and Port of a vsock channel.
	GuestCID uint32
	Port     uint32
}

// PortName is the serial port name, defaulted.
func (a AgentChannel) PortName() string {
	if a.Name == "" {
		return DefaultAgentPort
	}
	return a.Name
}

// IsVsock reports whether the channel is AF_VSOCK.
func (a AgentChannel) IsVsock() bool { return a.Kind == ChannelVsock }

// CloseFiles closes every file the config hands over (the Net devices').
func (c *Config) CloseFiles() error {
	var errs []error
	for _, n := range c.Net {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}

// GuestParams are the kernel command-line words that tell joey-agent how it
// is reached; every driver appends them so the agent needs no other setup.
func (c *Config) GuestParams() []string {
	var p []string
	if c.AgentChannel.IsVsock() {
		p = append(p, fmt.Sprintf("joey.channel=vsock:%d", c.AgentChannel.Port))
	} else {
		p = append(p, "joey.channel=serial:"+c.AgentChannel.PortName())
	}
	if c.DebugConsole {
		p = append(p, "joey.debug_console="+DebugConsolePort)
	}
	return p
}

// Validate checks what every driver relies on and names the field at fault.
// It does not look at the host (whether Kernel exists is the driver's
// business).
func (c *Config) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("hypervisor config: %w", err)
	}
	return nil
}

func (c *Config) validate() error {
	if c == nil {
		return errors.New("config is nil")
	}
	if !validName(c.ID) {
		return fmt.Errorf("id %q must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit", c.ID)
	}
	if c.VCPUs < 1 {
		return fmt.Errorf("vcpus must be ≥ 1 (got %d)", c.VCPUs)
	}
	if c.MaxVCPUs != 0 && c.MaxVCPUs < c.VCPUs {
		return fmt.Errorf("max vcpus must be 0 or ≥ vcpus (%d) (got %d)", c.VCPUs, c.MaxVCPUs)
	}
	if c.MemoryMiB < 64 {
		return fmt.Errorf("memory must be ≥ 64 MiB (got %d)", c.MemoryMiB)
	}
	if c.Kernel == "" {
		return errors.New("kernel is empty: give the path of the guest kernel")
	}
	for _, w := range c.KernelParams {
		if w == "" || strings.ContainsAny(w, " \t\n") {
			return fmt.Errorf("kernel params: %q is not one word", w)
		}
	}
	switch c.Accel {
	case "", AccelAuto, AccelKVM, AccelTCG:
	default:
		return fmt.Errorf("accel %q is not one of auto, kvm, tcg", c.Accel)
	}
	if !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("state dir %q must be an absolute path", c.StateDir)
	}
	if len(c.StateDir) > MaxStateDirLen {
		return fmt.Errorf("state dir %q is %d bytes; unix sockets inside it need it ≤ %d", c.StateDir, len(c.StateDir), MaxStateDirLen)
	}
	if c.HotplugSlots < 0 {
		return fmt.Errorf("hotplug slots must be ≥ 0 (got %d)", c.HotplugSlots)
	}
	if err := c.AgentChannel.validate(); err != nil {
		return err
	}
	return c.validateDevices()
}

func (a AgentChannel) validate() error {
	switch a.Kind {
	case "", ChannelSerial:
		if a.Name != "" && !validName(a.Name) {
			return fmt.Errorf("agent channel: port name %q must be letters, digits, '-', '_' or '.'", a.Name)
		}
	case ChannelVsock:
		// CIDs 0-2 are the hypervisor, local and host; the guest needs its own.
		if a.GuestCID < 3 {
			return fmt.Errorf("agent channel: vsock guest cid must be ≥ 3 (got %d)", a.GuestCID)
		}
		if a.Port == 0 {
			return errors.New("agent channel: vsock port must be set")
		}
	default:
		return fmt.Errorf("agent channel: kind %q is not one of serial, vsock", a.Kind)
	}
	return nil
}

func (c *Config) validateDevices() error {
	tags := map[string]bool{}
	for i, fs := range c.SharedFS {
		if err := fs.validate(); err != nil {
			return fmt.Errorf("shared fs %d: %w", i, err)
		}
		if tags[fs.Tag] {
			return fmt.Errorf("shared fs %d: tag %q is used twice", i, fs.Tag)
		}
		tags[fs.Tag] = true
		if fs.Kind == SharedFSVirtioFS && !c.SharedMemory {
			return fmt.Errorf("shared fs %q: virtio-fs needs shared memory: set SharedMemory", fs.Tag)
		}
	}
	ids := map[string]bool{}
	unique := func(kind string, i int, id string) error {
		if ids[id] {
			return fmt.Errorf("%s %d: id %q is used twice", kind, i, id)
		}
		ids[id] = true
		return nil
	}
	for i, b := range c.Block {
		if err := b.Validate(); err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
		if err := unique("block", i, b.ID); err != nil {
			return err
		}
	}
	for i, n := range c.Net {
		if err := n.Validate(); err != nil {
			return fmt.Errorf("net %d: %w", i, err)
		}
		if err := unique("net", i, n.ID); err != nil {
			return err
		}
	}
	return nil
}

// validName accepts the names that are safe as VMM object ids and in paths.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '-' || r == '_' || r == '.'):
		default:
			return false
		}
	}
	return true
}
