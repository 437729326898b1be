// Package qemu is the hypervisor driver that runs each VM in a QEMU child
// process, controlled over QMP. The caller registers it:
//
//	d, err := qemu.New(qemu.Options{})
//	...
//	hypervisor.Register(d)
//
// It is not registered from an init function because its Options come from
// the runtime's configuration file.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/hypervisor/qemu/cmdline"
	"github.com/joeyrt/joey/hypervisor/qemu/qmp"
	"github.com/joeyrt/joey/internal/kvmdetect"
)

// DriverName is the name the driver registers under.
const DriverName = "qemu"

const (
	defaultBinary = "qemu-system-x86_64"
	defaultGrace  = 2 * time.Second
	// qmpTimeout bounds the wait for QMP when Start's ctx has no deadline.
	qmpTimeout = 60 * time.Second
	vhostVsock = "/dev/vhost-vsock"
)

// Options configure the driver (the [hypervisor.qemu] section of the
// configuration file).
type Options struct {
	// Binary is the QEMU to run: a path, or a name looked up in PATH.
	// Empty: qemu-system-x86_64.
	Binary string
	// Machine is used when a Config gives no hint: microvm (the default,
	// fastest to boot), q35 or pc.
	Machine string
	// Grace is how long Stop waits for QEMU to quit before killing it.
	// Zero: 2s.
	Grace time.Duration
}

// Driver starts QEMU VMs.
type Driver struct {
	opts   Options
	detect func() kvmdetect.Result
	// vsockDevice is the host's vhost-vsock device node.
	vsockDevice string
	// paused starts QEMU with -S: tests use it to exercise devices and QMP
	// without the cost of booting a guest.
	paused bool

	probeMu sync.Mutex
	devices map[string]bool // guarded by probeMu; QEMU's device models, once probed
}

var _ hypervisor.Driver = (*Driver)(nil)

// New checks opts and returns a driver.
func New(opts Options) (*Driver, error) {
	if opts.Binary == "" {
		opts.Binary = defaultBinary
	}
	if opts.Machine == "" {
		opts.Machine = string(cmdline.Microvm)
	}
	if _, err := machineType(opts.Machine); err != nil {
		return nil, fmt.Errorf("qemu options: %w", err)
	}
	if opts.Grace < 0 {
		return nil, fmt.Errorf("qemu options: grace must be ≥ 0 (got %v)", opts.Grace)
	}
	if opts.Grace == 0 {
		opts.Grace = defaultGrace
	}
	return &Driver{opts: opts, detect: kvmdetect.Detect, vsockDevice: vhostVsock}, nil
}

// Name implements hypervisor.Driver.
func (d *Driver) Name() string { return DriverName }

func machineType(name string) (cmdline.MachineType, error) {
	switch m := cmdline.MachineType(name); m {
	case cmdline.Microvm, cmdline.Q35, cmdline.PC:
		return m, nil
	}
	return "", fmt.Errorf("machine %q is not one of microvm, q35, pc", name)
}

// machineFor picks the machine: the Config's hint, else q35 when hotplug is
// wanted (microvm has no hotplug), else the driver's default.
func (d *Driver) machineFor(cfg *hypervisor.Config) (cmdline.MachineType, error) {
	name := cfg.Machine
	if name == "" {
		name = d.opts.Machine
		if cfg.HotplugSlots > 0 {
			name = string(cmdline.Q35)
		}
	}
	m, err := machineType(name)
	if err != nil {
		return "", err
	}
	if cfg.HotplugSlots > 0 && m != cmdline.Q35 {
		return "", fmt.Errorf("hotplug slots need machine q35 (got %s): leave Machine empty or set it to q35", m)
	}
	return m, nil
}

func (d *Driver) binary() (string, error) {
	p, err := exec.LookPath(d.opts.Binary)
	if err != nil {
		return "", fmt.Errorf("qemu binary: %w (install qemu-system-x86 or set the qemu binary path)", err)
	}
	return p, nil
}

// Start implements hypervisor.Driver. It returns once QEMU answers on QMP;
// the guest is still booting then (AgentConn waits for it).
func (d *Driver) Start(ctx context.Context, cfg *hypervisor.Config) (_ hypervisor.VM, retErr error) {
	if cfg == nil {
		return nil, errors.New("start vm: config is nil")
	}
	// Whatever happens, the caller's TAP files are ours to close: QEMU has
	// its own copies once started.
	defer cfg.CloseFiles()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	fail := func(err error) (hypervisor.VM, error) { return nil, fmt.Errorf("start vm %s: %w", cfg.ID, err) }

	machine, err := d.machineFor(cfg)
	if err != nil {
		return fail(err)
	}
	accel, err := resolveAccel(cfg.Accel, d.detect())
	if err != nil {
		return fail(err)
	}
	if cfg.AgentChannel.IsVsock() {
		if _, err := os.Stat(d.vsockDevice); err != nil {
			return fail(fmt.Errorf("vsock agent channel needs %s: %w (load vhost_vsock or use the serial channel)", d.vsockDevice, err))
		}
	}
	bin, err := d.binary()
	if err != nil {
		return fail(err)
	}
	log.G(ctx).WithField("vm", cfg.ID).Infof("qemu: machine %s, accelerator %s (%s)", machine, accel.kind, accel.reason)

	if err := os.MkdirAll(filepath.Dir(cfg.StateDir), 0o711); err != nil {
		return fail(fmt.Errorf("state dir: %w", err))
	}
	// Mkdir, not MkdirAll: the directory must be ours alone, since Stop
	// removes it with all it holds.
	if err := os.Mkdir(cfg.StateDir, 0o700); err != nil {
		return fail(fmt.Errorf("state dir: %w (it must not exist yet)", err))
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(cfg.StateDir)
		}
	}()

	p := plan{machine: machine, accel: accel.kind, stateDir: cfg.StateDir, paused: d.paused}
	if p.accel == "tcg" {
		if p.tscKHz, err = hostTSCKHz(); err != nil {
			log.G(ctx).WithError(err).Warn("qemu: host TSC rate unknown; a busy host may hang the guest's boot")
		}
	}
	cl := buildCmdline(cfg, p)
	defer cl.Close()
	args, files, err := cl.Build()
	if err != nil {
		return fail(err)
	}
	log.G(ctx).WithField("vm", cfg.ID).Debugf("qemu: %s %s", bin, strings.Join(args, " "))
	proc, err := startProcess(bin, args, files)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if retErr != nil {
			if err := proc.killAndWait(5 * time.Second); err != nil {
				log.G(ctx).WithError(err).Error("qemu: failed start left a process behind")
			}
		}
	}()
	client, err := waitQMP(ctx, proc, p.path(qmpSocketName))
	if err != nil {
		return fail(err)
	}
	v := &vm{
		id:           cfg.ID,
		stateDir:     cfg.StateDir,
		agent:        cfg.AgentChannel,
		debugConsole: cfg.DebugConsole,
		proc:         proc,
		qmp:          client,
		grace:        d.opts.Grace,
	}
	if cfg.HotplugSlots > 0 {
		return newHotplugVM(v, cfg.HotplugSlots), nil
	}
	return v, nil
}

// waitQMP connects to QEMU's QMP socket. QEMU creates the socket early but
// greets only once the machine is built, so a successful Dial means QEMU
// accepted the whole command line. If QEMU exits first, the error carries
// what it printed.
func waitQMP(ctx context.Context, proc *process, sock string) (*qmp.Client, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, qmpTimeout)
		defer cancel()
	}
	// Dialing stops as soon as QEMU exits, rather than when ctx ends.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-proc.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		c, err := qmp.Dial(ctx, sock)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
		case <-proc.exited:
		case <-time.After(10 * time.Millisecond):
			continue
		}
		// ctx is cancelled once QEMU has exited, so look at the exit first.
		if proc.hasExited() {
			if err := proc.exitErr(); err != nil {
				return nil, fmt.Errorf("qemu exited during start: %w", err)
			}
			return nil, errors.New("qemu exited during start with status 0")
		}
		return nil, fmt.Errorf("qemu did not answer on QMP: %w (last error: %v)", ctx.Err(), err)
	}
}
