package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Limits on VM sizes. 255 vCPUs is what x86 can address without x2APIC; a
// guest below 128 MiB does not unpack the initramfs reliably.
const (
	maxVCPUs     = 255
	minMemoryMiB = 128
)

var (
	hypervisors   = []string{HypervisorQEMU, HypervisorBuiltin}
	logLevels     = []string{"trace", "debug", "info", "warn", "error"}
	networkModels = []string{NetworkTCFilter, NetworkMacvtap}
	machines      = []string{MachineMicrovm, MachineQ35, MachinePC}
	accels        = []string{AccelAuto, AccelKVM, AccelTCG}
	sharedFSs     = []string{SharedFS9P, SharedFSVirtioFS}
	agentChannels = []string{AgentChannelSerial, AgentChannelVsock}
	annotations   = []string{AnnotationVCPUs, AnnotationMemoryMiB}
)

// Error is one problem with a configuration. Load and Validate return these
// joined with errors.Join, one per problem; use errors.As to inspect one.
type Error struct {
	File         string // the file, or "" for the compiled-in defaults
	Line, Column int    // 1-based position in File, 0 when not known
	Key          string // full dotted key, e.g. "hypervisor.qemu.machine"
	Msg          string // the problem, naming Key
}

func (e *Error) Error() string {
	where := "config"
	if e.File != "" {
		where += " " + e.File
	}
	if e.Line > 0 {
		where += fmt.Sprintf(":%d:%d", e.Line, e.Column)
	}
	return where + ": " + e.Msg
}

// problems collects validation errors for one file.
type problems struct {
	file string
	errs []error
}

func (p *problems) add(key string, value any, want string) {
	p.errs = append(p.errs, &Error{File: p.file, Key: key, Msg: fmt.Sprintf("%s = %s: want %s", key, show(value), want)})
}

func (p *problems) oneOf(key, value string, allowed []string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	p.add(key, value, "one of "+strings.Join(allowed, ", "))
}

func (p *problems) intRange(key string, value, lo, hi int) {
	if value < lo || value > hi {
		p.add(key, value, fmt.Sprintf("%d to %d", lo, hi))
	}
}

func (p *problems) absPath(key, value string, optional bool) {
	if optional && value == "" {
		return
	}
	if !filepath.IsAbs(value) {
		want := "an absolute path"
		if optional {
			want += ", or \"\" for the default"
		}
		p.add(key, value, want)
	}
}

// words checks a list whose items end up as single arguments or kernel
// command-line words, where an empty item or a control character is a mistake.
func (p *problems) words(key string, list []string) {
	for i, w := range list {
		if w == "" || strings.ContainsFunc(w, isControl) {
			p.add(fmt.Sprintf("%s[%d]", key, i), w, "a non-empty string without control characters")
		}
	}
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func show(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// Validate checks every value and returns all problems at once, joined, so
// an operator fixes a file in one pass. It returns nil for a usable config.
func (c *Config) Validate() error {
	p := &problems{file: c.Path}

	r := c.Runtime
	p.oneOf("runtime.hypervisor", r.Hypervisor, hypervisors)
	p.absPath("runtime.state_dir", r.StateDir, false)
	p.oneOf("runtime.log_level", r.LogLevel, logLevels)
	p.oneOf("runtime.network_model", r.NetworkModel, networkModels)
	for i, a := range r.DefaultAnnotationsAllowed {
		p.oneOf(fmt.Sprintf("runtime.default_annotations_allowed[%d]", i), a, annotations)
	}

	im := c.Image
	p.absPath("image.dir", im.Dir, false)
	p.absPath("image.kernel", im.Kernel, true)
	p.absPath("image.initrd", im.Initrd, true)
	p.words("image.kernel_params", im.KernelParams)

	q := c.Hypervisor.QEMU
	switch {
	case q.Path == "":
		p.add("hypervisor.qemu.path", q.Path, "a program name looked up on PATH, or an absolute path")
	case strings.ContainsRune(q.Path, '/') && !filepath.IsAbs(q.Path):
		p.add("hypervisor.qemu.path", q.Path, "a program name looked up on PATH, or an absolute path")
	}
	p.oneOf("hypervisor.qemu.machine", q.Machine, machines)
	p.oneOf("hypervisor.qemu.accel", q.Accel, accels)
	p.intRange("hypervisor.qemu.vcpus", q.VCPUs, 1, maxVCPUs)
	if lo := max(q.VCPUs, 1); q.MaxVCPUs != 0 && (q.MaxVCPUs < lo || q.MaxVCPUs > maxVCPUs) {
		p.add("hypervisor.qemu.max_vcpus", q.MaxVCPUs,
			fmt.Sprintf("0 (same as vcpus), or vcpus (%d) to %d", q.VCPUs, maxVCPUs))
	}
	if q.MemoryMiB < minMemoryMiB {
		p.add("hypervisor.qemu.memory_mib", q.MemoryMiB, fmt.Sprintf("at least %d", minMemoryMiB))
	}
	p.oneOf("hypervisor.qemu.shared_fs", q.SharedFS, sharedFSs)
	p.oneOf("hypervisor.qemu.agent_channel", q.AgentChannel, agentChannels)
	for i, a := range q.ExtraArgs {
		if strings.ContainsRune(a, 0) {
			p.add(fmt.Sprintf("hypervisor.qemu.extra_args[%d]", i), a, "a string without NUL bytes")
		}
	}

	b := c.Hypervisor.Builtin
	p.intRange("hypervisor.builtin.vcpus", b.VCPUs, 1, maxVCPUs)
	if b.MemoryMiB < minMemoryMiB {
		p.add("hypervisor.builtin.memory_mib", b.MemoryMiB, fmt.Sprintf("at least %d", minMemoryMiB))
	}
	p.oneOf("hypervisor.builtin.agent_channel", b.AgentChannel, agentChannels)

	a := c.Agent
	switch {
	case a.DialTimeout.invalid:
		p.add("agent.dial_timeout", a.DialTimeout.text, `a duration with a unit, such as "60s" or "2m"`)
	case a.DialTimeout.Duration <= 0:
		p.add("agent.dial_timeout", a.DialTimeout.String(), "a positive duration, such as \"60s\"")
	}
	p.oneOf("agent.log_level", a.LogLevel, logLevels)

	return errors.Join(p.errs...)
}
