// Package hypervisor is the contract between the runtime and the VMMs that run
// its sandboxes. The core (Driver, VM) is what every VMM must do: start a VM
// from a Config, hand out connections to the guest agent, stop it and report
// its end. What only some VMMs can do (hotplug, resize, pause, snapshot) is a
// separate small interface that a VM may implement; callers discover it with
// a type assertion, so a VM that cannot do something simply does not claim to.
package hypervisor

import (
	"context"
	"net"
)

// Driver starts VMs with one VMM. Drivers are registered by name (see
// Registry) and picked by the configuration.
type Driver interface {
	// Name is the name the driver is registered under ("qemu", "builtin").
	Name() string
	// Capabilities tells what VMs of this driver can do on this host.
	Capabilities(ctx context.Context) (Capabilities, error)
	// Start boots a VM. ctx bounds the start only, never the VM's life. On
	// error nothing is left behind: no process, no StateDir, no open file of
	// cfg (Start owns the files in cfg.Net whatever happens).
	Start(ctx context.Context, cfg *Config) (VM, error)
}

// VM is a running virtual machine.
type VM interface {
	// AgentConn opens a fresh byte stream to the guest agent's channel. A
	// serial channel carries one connection at a time: close the previous
	// one before asking for another.
	AgentConn(ctx context.Context) (net.Conn, error)
	// Stop ends the VM: a graceful request to the VMM first, then a kill
	// when ctx ends or a short grace period passes. It frees everything the
	// VM held (StateDir, sockets, files). Stop is idempotent and must be
	// called even after the VM exited on its own. Asking the guest to shut
	// down first (the agent's destroy call) is the caller's job.
	Stop(ctx context.Context) error
	// Wait is closed once the VMM has exited (or, for an in-process VMM,
	// the VM has ended).
	Wait() <-chan struct{}
	// ExitErr explains how the VM ended: nil for a clean exit, otherwise the
	// VMM's exit status and its last words. Only meaningful after Wait.
	ExitErr() error
	// Pid is the VMM's process id, or 0 for an in-process VMM.
	Pid() int
}

// Hotplugger adds and removes devices of a running VM.
type Hotplugger interface {
	// AddDevice plugs dev into a free hotplug slot. The VM owns the files of
	// a NetDevice from the call on, whether it succeeds or not.
	AddDevice(ctx context.Context, dev Device) error
	// RemoveDevice unplugs the device with this ID and waits until the guest
	// has released it or ctx ends.
	RemoveDevice(ctx context.Context, id string) error
}

// Resizer changes the CPUs and memory of a running VM.
type Resizer interface {
	ResizeVCPUs(ctx context.Context, vcpus int) error
	ResizeMemory(ctx context.Context, memoryMiB int) error
}

// Pauser freezes and thaws the guest's vCPUs; the VMM process stays alive.
type Pauser interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// Snapshotter saves a VM's state to a directory and restores it.
type Snapshotter interface {
	Save(ctx context.Context, dir string) error
	Restore(ctx context.Context, dir string) error
}

// DebugConsoler opens the guest's debug console (Config.DebugConsole).
type DebugConsoler interface {
	DebugConsole(ctx context.Context) (net.Conn, error)
}

// Device is a device that can be hot-added: BlockDevice or NetDevice. The set
// is closed on purpose: a driver switches over concrete types, never over a
// type tag.
type Device interface {
	// DeviceID is the ID RemoveDevice takes.
	DeviceID() string
	isDevice()
}

// DeviceID implements Device.
func (b BlockDevice) DeviceID() string { return b.ID }
func (BlockDevice) isDevice()          {}

// DeviceID implements Device.
func (n NetDevice) DeviceID() string { return n.ID }
func (NetDevice) isDevice()          {}
