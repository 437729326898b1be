package container

import (
	"fmt"
	"path"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// newConfig turns an OCI spec into libcontainer's container config.
func (m *Manager) newConfig(id string, spec *specs.Spec) (*configs.Config, error) {
	s := *spec
	if s.Linux == nil || s.Linux.CgroupsPath == "" {
		// A copy, so that the caller's spec stays as it was.
		var l specs.Linux
		if s.Linux != nil {
			l = *s.Linux
		}
		l.CgroupsPath = path.Join(m.opts.CgroupParent, id)
		s.Linux = &l
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:  id,
		NoPivotRoot: m.opts.NoPivotRoot,
		Spec:        &s,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: spec: %w", ErrInvalid, err)
	}
	return cfg, nil
}

// newProcess turns an OCI process into libcontainer's. Rlimits, unlike
// capabilities and the rest, are not in specconv's container config: they
// travel with each process.
func newProcess(field string, p *specs.Process, init bool) (*libcontainer.Process, error) {
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	nnp := p.NoNewPrivileges
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		Cwd:             cwd,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Init:            init,
		NoNewPrivileges: &nnp,
		AppArmorProfile: p.ApparmorProfile,
		Label:           p.SelinuxLabel,
		Scheduler:       p.Scheduler,
		IOPriority:      p.IOPriority,
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding:    c.Bounding,
			Effective:   c.Effective,
			Permitted:   c.Permitted,
			Inheritable: c.Inheritable,
			Ambient:     c.Ambient,
		}
	}
	if p.ConsoleSize != nil {
		lp.ConsoleHeight = uint16(p.ConsoleSize.Height)
		lp.ConsoleWidth = uint16(p.ConsoleSize.Width)
	}
	aff, err := configs.ConvertCPUAffinity(p.ExecCPUAffinity)
	if err != nil {
		return nil, fmt.Errorf("%w: %s.execCPUAffinity: %w", ErrInvalid, field, err)
	}
	lp.CPUAffinity = aff
	for i, rl := range p.Rlimits {
		res, ok := rlimits[rl.Type]
		if !ok {
			return nil, fmt.Errorf("%w: %s.rlimits[%d].type %q is not a Linux rlimit (RLIMIT_NOFILE, RLIMIT_NPROC, ...)", ErrInvalid, field, i, rl.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: res, Hard: rl.Hard, Soft: rl.Soft})
	}
	return lp, nil
}

var rlimits = map[string]int{
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
}
