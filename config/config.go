// Package config is joey's configuration: a TOML file (DESIGN decision 12)
// layered over defaults compiled into the binary, so a host without
// /etc/joey/config.toml still runs. Every value is checked before anything
// uses it, and every problem names the file and the full dotted key.
package config

import (
	_ "embed"
	"path/filepath"
	"slices"
	"time"
)

// Names of the hypervisor drivers runtime.hypervisor may pick.
const (
	HypervisorQEMU    = "qemu"
	HypervisorBuiltin = "builtin"
)

// Network models: how a pod's interface reaches the VM.
const (
	NetworkTCFilter = "tcfilter" // TAP + tc mirred redirect both ways
	NetworkMacvtap  = "macvtap"
)

// QEMU machine types joey knows how to drive.
const (
	MachineMicrovm = "microvm"
	MachineQ35     = "q35"
	MachinePC      = "pc"
)

// Accelerators. "auto" asks the driver to detect one (DESIGN decision 10).
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// Shared filesystems that carry container rootfs into the guest.
const (
	SharedFS9P       = "9p"
	SharedFSVirtioFS = "virtio-fs"
)

// Agent channels between the runtime and the guest agent.
const (
	AgentChannelSerial = "serial"
	AgentChannelVsock  = "vsock"
)

// OCI annotations a pod may use to override its VM's resources, when
// runtime.default_annotations_allowed lists them.
const (
	AnnotationVCPUs     = "io.joey.config.vcpus"
	AnnotationMemoryMiB = "io.joey.config.memory_mib"
)

// Where the configuration comes from when the caller names no file.
const (
	DefaultPath = "/etc/joey/config.toml"
	EnvPath     = "JOEY_CONFIG"
)

// Config is the whole configuration. Its TOML layout is documented key by
// key in joey.toml (DefaultTOML).
type Config struct {
	Runtime    Runtime     `toml:"runtime"`
	Image      Image       `toml:"image"`
	Hypervisor Hypervisors `toml:"hypervisor"`
	Agent      Agent       `toml:"agent"`

	// Path is the file this configuration was read from, or "" for the
	// compiled-in defaults. Errors name it so an operator knows what to edit.
	Path string `toml:"-"`
}

// Runtime is the [runtime] section.
type Runtime struct {
	Hypervisor                string   `toml:"hypervisor"`
	StateDir                  string   `toml:"state_dir"`
	LogLevel                  string   `toml:"log_level"`
	NetworkModel              string   `toml:"network_model"`
	SandboxCgroupOnly         bool     `toml:"sandbox_cgroup_only"`
	DefaultAnnotationsAllowed []string `toml:"default_annotations_allowed"`
}

// Image is the [image] section: where the guest kernel and initramfs are.
type Image struct {
	Dir          string   `toml:"dir"`
	Kernel       string   `toml:"kernel"`
	Initrd       string   `toml:"initrd"`
	KernelParams []string `toml:"kernel_params"`
}

// Hypervisors holds one section per driver, so switching drivers keeps each
// driver's settings.
type Hypervisors struct {
	QEMU    QEMU    `toml:"qemu"`
	Builtin Builtin `toml:"builtin"`
}

// QEMU is the [hypervisor.qemu] section.
type QEMU struct {
	Path         string   `toml:"path"`
	Machine      string   `toml:"machine"`
	Accel        string   `toml:"accel"`
	VCPUs        int      `toml:"vcpus"`
	MaxVCPUs     int      `toml:"max_vcpus"`
	MemoryMiB    int      `toml:"memory_mib"`
	SharedFS     string   `toml:"shared_fs"`
	AgentChannel string   `toml:"agent_channel"`
	DebugConsole bool     `toml:"debug_console"`
	ExtraArgs    []string `toml:"extra_args"`
}

// Builtin is the [hypervisor.builtin] section.
type Builtin struct {
	VCPUs        int    `toml:"vcpus"`
	MemoryMiB    int    `toml:"memory_mib"`
	AgentChannel string `toml:"agent_channel"`
	DebugConsole bool   `toml:"debug_console"`
}

// Agent is the [agent] section.
type Agent struct {
	DialTimeout Duration `toml:"dial_timeout"`
	LogLevel    string   `toml:"log_level"`
}

//go:embed joey.toml
var defaultTOML []byte

// DefaultTOML returns the documented default configuration file, the one
// `make install` copies to /etc/joey/config.toml. Loading it gives Default().
func DefaultTOML() []byte { return slices.Clone(defaultTOML) }

// Default returns the compiled-in configuration. Lists are empty rather than
// nil so a file that spells out `[]` loads to an identical value.
func Default() *Config {
	return &Config{
		Runtime: Runtime{
			Hypervisor:                HypervisorQEMU,
			StateDir:                  "/run/joey",
			LogLevel:                  "info",
			NetworkModel:              NetworkTCFilter,
			DefaultAnnotationsAllowed: []string{AnnotationVCPUs, AnnotationMemoryMiB},
		},
		Image: Image{
			Dir:          "/var/lib/joey/image",
			KernelParams: []string{},
		},
		Hypervisor: Hypervisors{
			QEMU: QEMU{
				Path:         "qemu-system-x86_64",
				Machine:      MachineMicrovm,
				Accel:        AccelAuto,
				VCPUs:        1,
				MemoryMiB:    512,
				SharedFS:     SharedFS9P,
				AgentChannel: AgentChannelSerial,
				ExtraArgs:    []string{},
			},
			Builtin: Builtin{VCPUs: 1, MemoryMiB: 512, AgentChannel: AgentChannelSerial},
		},
		Agent: Agent{
			// TCG boots take 3–7 s and nested ones longer; a minute leaves
			// room for a loaded host without hanging forever.
			DialTimeout: Duration{Duration: 60 * time.Second},
			LogLevel:    "info",
		},
	}
}

// KernelPath is the guest kernel to boot: image.kernel, or vmlinux in
// image.dir (the ELF that boots fastest through PVH; see RECIPES.md).
func (i Image) KernelPath() string {
	if i.Kernel != "" {
		return i.Kernel
	}
	return filepath.Join(i.Dir, "vmlinux")
}

// InitrdPath is the guest initramfs: image.initrd, or initrd.img in image.dir.
func (i Image) InitrdPath() string {
	if i.Initrd != "" {
		return i.Initrd
	}
	return filepath.Join(i.Dir, "initrd.img")
}

// EffectiveMaxVCPUs is the number of vCPUs the VM can grow to: max_vcpus, or
// vcpus when max_vcpus is 0.
func (q QEMU) EffectiveMaxVCPUs() int {
	if q.MaxVCPUs == 0 {
		return q.VCPUs
	}
	return q.MaxVCPUs
}

// AnnotationAllowed reports whether a pod's OCI annotation key may override
// the VM's resources.
func (c *Config) AnnotationAllowed(key string) bool {
	return slices.Contains(c.Runtime.DefaultAnnotationsAllowed, key)
}
