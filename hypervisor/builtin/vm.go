//go:build !no_builtin_vmm

package builtin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/vmm/machine"
	"github.com/joeyrt/joey/vmm/vm"
)

// Capabilities implements hypervisor.Driver.
func (d *Driver) Capabilities(context.Context) (hypervisor.Capabilities, error) {
	if err := d.usable(); err != nil {
		return hypervisor.Capabilities{}, fmt.Errorf("builtin capabilities: %w", err)
	}
	no := func(what string) hypervisor.Support {
		return hypervisor.Support{Reason: what + " is not implemented by the built-in VMM"}
	}
	return hypervisor.Capabilities{
		Accel:         hypervisor.AccelKVM,
		AccelReason:   d.opts.Detect().Reason,
		Hotplug:       hypervisor.Support{Available: true, Reason: "NICs only, found by the guest's PCI rescan; no removal"},
		Resize:        no("resizing"),
		Pause:         no("pausing"),
		Snapshot:      no("snapshotting"),
		SharedFS:      []hypervisor.SharedFSKind{hypervisor.SharedFS9P},
		AgentChannels: []hypervisor.ChannelKind{hypervisor.ChannelSerial, hypervisor.ChannelVsock},
	}, nil
}

// Start implements hypervisor.Driver: it builds the VM in this process and
// starts its vCPUs. The VM owns cfg's TAP files from here on (they are
// closed on error too).
func (d *Driver) Start(ctx context.Context, cfg *hypervisor.Config) (_ hypervisor.VM, retErr error) {
	handedOver := false
	defer func() {
		if !handedOver {
			cfg.CloseFiles()
		}
	}()
	if err := d.usable(); err != nil {
		return nil, err
	}
	if err := check(cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.StateDir), 0o711); err != nil {
		return nil, fmt.Errorf("start vm %s: %w", cfg.ID, err)
	}
	// The state directory holds nothing of the VMM's (no sockets, no
	// pid file); it exists so the runtime's layout is the same for every
	// driver, and it goes with the VM.
	if err := os.Mkdir(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("start vm %s: %w", cfg.ID, err)
	}
	v := &builtinVM{id: cfg.ID, stateDir: cfg.StateDir, done: make(chan struct{}), debugConsole: cfg.DebugConsole,
		agentPort: cfg.AgentChannel.PortName()}
	defer func() {
		if retErr != nil {
			v.release()
		}
	}()
	var console io.Writer = io.Discard
	if cfg.ConsoleLog != "" {
		f, err := os.OpenFile(cfg.ConsoleLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("start vm %s: console log: %w", cfg.ID, err)
		}
		v.consoleLog = f
		console = f
	}
	vc := vm.Config{
		VCPUs:     cfg.VCPUs,
		MemoryMiB: cfg.MemoryMiB,
		Kernel:    cfg.Kernel,
		Initrd:    cfg.Initrd,
		Cmdline:   strings.Join(kernelParams(cfg), " "),
		Console:   console,
		Ports:     []string{v.agentPort},
		RNG:       true,
		Device:    d.opts.Device,
	}
	if cfg.DebugConsole {
		vc.Ports = append(vc.Ports, hypervisor.DebugConsolePort)
	}
	if cfg.AgentChannel.IsVsock() {
		vc.VsockCID = uint64(cfg.AgentChannel.GuestCID)
		v.agentVsockPort = cfg.AgentChannel.Port
	}
	for _, fs := range cfg.SharedFS {
		vc.Shares = append(vc.Shares, vm.Share{Tag: fs.Tag, Dir: fs.HostPath, ReadOnly: fs.ReadOnly})
	}
	for _, b := range cfg.Block {
		vc.Disks = append(vc.Disks, vm.Disk{Path: b.Path, ReadOnly: b.ReadOnly, Serial: b.ID})
	}
	for _, n := range cfg.Net {
		vc.NICs = append(vc.NICs, vm.NIC{TAP: n.TapFiles[0], MAC: n.MAC, MTU: n.MTU})
	}
	handedOver = true
	m, err := vm.New(vc)
	if err != nil {
		// vm.New closed the TAPs it took; close the ones it did not
		// reach (closing twice is harmless: os.ErrClosed is ignored).
		cfg.CloseFiles()
		return nil, fmt.Errorf("start vm %s: %w", cfg.ID, err)
	}
	v.vm = m
	if err := m.Start(); err != nil {
		return nil, fmt.Errorf("start vm %s: %w", cfg.ID, err)
	}
	go v.watch(log.WithLogger(context.WithoutCancel(ctx), log.G(ctx).WithField("vm", cfg.ID)))
	return v, nil
}

// kernelParams is the guest's command line: a panic or reset ends the VM,
// then the agent's settings and the caller's words.
func kernelParams(cfg *hypervisor.Config) []string {
	p := []string{"panic=-1", "reboot=t"}
	p = append(p, cfg.GuestParams()...)
	return append(p, cfg.KernelParams...)
}

// builtinVM is one VM running in this process.
type builtinVM struct {
	id, stateDir string
	agentPort    string
	// agentVsockPort is the agent's vsock port when the channel is
	// vsock, 0 otherwise.
	agentVsockPort uint32
	debugConsole   bool
	vm             *vm.VM
	consoleLog     *os.File
	// done is closed once the VM has ended and released everything;
	// end is written before.
	done chan struct{}
	end  machine.End
	// stopMu serializes Stop.
	stopMu sync.Mutex
	// releaseOnce makes release idempotent; releaseErr is its result.
	releaseOnce sync.Once
	releaseErr  error
}

var (
	_ hypervisor.VM            = (*builtinVM)(nil)
	_ hypervisor.DebugConsoler = (*builtinVM)(nil)
	_ hypervisor.Hotplugger    = (*builtinVM)(nil)
)

// watch waits for the guest to end the VM (power-off, reset, failure) or
// Stop to, then frees it.
func (v *builtinVM) watch(ctx context.Context) {
	end := v.vm.Wait()
	if err := v.release(); err != nil {
		log.G(ctx).WithError(err).Warn("builtin: releasing the VM")
	}
	v.end = end
	log.G(ctx).WithField("end", end.String()).Debug("builtin: VM ended")
	close(v.done)
}

// release frees the VM, its devices, the console log and the state dir.
func (v *builtinVM) release() error {
	v.releaseOnce.Do(func() {
		var errs []error
		if v.vm != nil {
			errs = append(errs, v.vm.Close())
		}
		if v.consoleLog != nil {
			errs = append(errs, v.consoleLog.Close())
		}
		if err := os.RemoveAll(v.stateDir); err != nil {
			errs = append(errs, err)
		}
		v.releaseErr = errors.Join(errs...)
	})
	return v.releaseErr
}

// Pid implements hypervisor.VM: 0, the VMM is this process.
func (v *builtinVM) Pid() int { return 0 }

// Wait implements hypervisor.VM.
func (v *builtinVM) Wait() <-chan struct{} { return v.done }

// ExitErr implements hypervisor.VM: nil for a power-off or a Stop, the
// reason otherwise (a guest reset, a panic with panic=-1, a VMM failure).
func (v *builtinVM) ExitErr() error {
	select {
	case <-v.done:
	default:
		return nil
	}
	switch v.end.Reason {
	case machine.PowerOff, machine.Stopped:
		return nil
	}
	return fmt.Errorf("vm %s: %v", v.id, v.end)
}

// AgentConn implements hypervisor.VM: the host side of the agent's port
// or a connection to its vsock port, in process either way.
func (v *builtinVM) AgentConn(ctx context.Context) (net.Conn, error) {
	if v.agentVsockPort != 0 {
		select {
		case <-v.done:
			return nil, fmt.Errorf("vm %s: vsock port %d: the VM has ended", v.id, v.agentVsockPort)
		default:
		}
		c, err := v.vm.DialVsock(ctx, v.agentVsockPort)
		if err != nil {
			return nil, fmt.Errorf("vm %s: %w", v.id, err)
		}
		return c, nil
	}
	return v.port(ctx, v.agentPort)
}

// DebugConsole implements hypervisor.DebugConsoler.
func (v *builtinVM) DebugConsole(ctx context.Context) (net.Conn, error) {
	if !v.debugConsole {
		return nil, fmt.Errorf("vm %s: no debug console: start the VM with DebugConsole set", v.id)
	}
	return v.port(ctx, hypervisor.DebugConsolePort)
}

func (v *builtinVM) port(ctx context.Context, name string) (net.Conn, error) {
	select {
	case <-v.done:
		return nil, fmt.Errorf("vm %s: port %s: the VM has ended", v.id, name)
	case <-ctx.Done():
		return nil, ctx.Err()
	default:
	}
	c, err := v.vm.Port(name)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %w", v.id, err)
	}
	return c, nil
}

// Stop implements hypervisor.VM: the vCPUs stop at once (there is no
// guest to wait for: asking it to shut down is the agent's job, before
// Stop), then everything is released.
func (v *builtinVM) Stop(ctx context.Context) error {
	v.stopMu.Lock()
	defer v.stopMu.Unlock()
	v.vm.Stop()
	select {
	case <-v.done:
	case <-ctx.Done():
		return fmt.Errorf("stop vm %s: %w", v.id, ctx.Err())
	}
	if err := v.release(); err != nil {
		return fmt.Errorf("stop vm %s: %w", v.id, err)
	}
	return nil
}

// AddDevice implements hypervisor.Hotplugger for NICs: the device goes on
// a free PCI slot at once, and the guest finds it when it rescans its PCI
// bus (joey's agent does when asked to configure a MAC it does not see;
// there is no hotplug controller to announce it). Disks are refused.
func (v *builtinVM) AddDevice(ctx context.Context, dev hypervisor.Device) error {
	n, ok := dev.(hypervisor.NetDevice)
	if !ok {
		return fmt.Errorf("vm %s: hotplug %s: only NICs can be added to a running built-in VM: %w", v.id, dev.DeviceID(), errdefs.ErrNotImplemented)
	}
	fail := func(err error) error {
		n.Close()
		return fmt.Errorf("vm %s: hotplug %s: %w", v.id, n.ID, err)
	}
	switch {
	case len(n.TapFiles) != 1:
		return fail(fmt.Errorf("%d TAP queues: the built-in VMM serves one queue per NIC: %w", len(n.TapFiles), errdefs.ErrNotImplemented))
	case len(n.VhostFiles) > 0:
		return fail(fmt.Errorf("vhost-net: the device model runs in process: %w", errdefs.ErrNotImplemented))
	}
	select {
	case <-v.done:
		return fail(errors.New("the VM has ended"))
	case <-ctx.Done():
		return fail(ctx.Err())
	default:
	}
	slot, err := v.vm.AddNIC(vm.NIC{TAP: n.TapFiles[0], MAC: n.MAC, MTU: n.MTU}) // owns the TAP
	if err != nil {
		return fmt.Errorf("vm %s: hotplug %s: %w", v.id, n.ID, err)
	}
	log.G(ctx).WithField("vm", v.id).WithField("nic", n.ID).WithField("slot", slot).Debug("builtin: NIC added; the guest sees it after a PCI rescan")
	return nil
}

// RemoveDevice implements hypervisor.Hotplugger: without a hotplug
// controller the guest cannot be asked to let a device go.
func (v *builtinVM) RemoveDevice(ctx context.Context, id string) error {
	return fmt.Errorf("vm %s: unplug %s: the built-in VMM cannot remove devices from a running VM: %w", v.id, id, errdefs.ErrNotImplemented)
}
