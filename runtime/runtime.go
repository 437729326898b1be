// Package runtime is the contract between the containerd-facing service (and
// `joey run`) and the handlers that run sandboxes. A handler ("virt": one VM
// per sandbox) is registered by name; the service never knows which VMM or
// transport is underneath.
package runtime

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"syscall"
	"time"

	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/v2/core/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/config"
)

// Handler creates and cleans up sandboxes of one kind.
type Handler interface {
	// Name is the name the handler is registered under.
	Name() string
	// CreateSandbox starts the sandbox (for "virt": boots the VM and
	// prepares the guest). It is all-or-nothing: on error nothing is left.
	CreateSandbox(ctx context.Context, cfg SandboxConfig) (Sandbox, error)
	// Cleanup frees whatever the persisted state of a sandbox says is still
	// held (VMM process, mounts, TAPs, state directory) when its shim died.
	// A sandbox with no persisted state is not an error.
	Cleanup(ctx context.Context, namespace, id string) error
}

// SandboxConfig describes a sandbox to create.
type SandboxConfig struct {
	ID        string
	Namespace string
	// Spec is the OCI spec of the sandbox's first container (for CRI, the
	// pause container): its annotations and resources size the VM and its
	// network namespace is the pod's.
	Spec   *specs.Spec
	Bundle string
	Config *config.Config
	// Events receives what the sandbox reports outside any call (OOM kills,
	// the VM's unexpected end). It must not block for long.
	Events func(Event)
}

// EventKind says what happened.
type EventKind int

const (
	// EventOOM: a container had a process killed by the guest's OOM killer.
	EventOOM EventKind = iota + 1
	// EventVMExited: the VM ended while the sandbox was running; every
	// process has been marked exited.
	EventVMExited
)

// Event is something a sandbox reports on its own.
type Event struct {
	Kind        EventKind
	ContainerID string
	Err         error
}

// Sandbox is a running sandbox holding containers.
type Sandbox interface {
	ID() string
	// Pid is the process containerd should see for the sandbox's tasks: the
	// VMM's, which lives in the pod's network namespace.
	Pid() int
	CreateContainer(ctx context.Context, cfg ContainerConfig) (Container, error)
	Container(id string) (Container, error)
	// Containers lists the sandbox's containers by ID.
	Containers() []string
	// Shutdown stops every container, stops the VM and frees all the
	// sandbox's resources and state. It is idempotent.
	Shutdown(ctx context.Context) error
}

// ContainerConfig describes a container to create in a sandbox.
type ContainerConfig struct {
	ID     string
	Bundle string
	Spec   *specs.Spec
	// Rootfs are containerd's mounts for the root filesystem; empty means
	// the spec's root.path is already the rootfs on the host.
	Rootfs []mount.Mount
	IO     IO
}

// IO is the host side of a process's stdio. Nil readers and writers mean
// the stream is not wanted. With Terminal, output arrives on Stdout only.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Terminal       bool
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	Code     uint32
	ExitedAt time.Time
}

// ProcessStatus is where a process is in its life.
type ProcessStatus string

const (
	StatusCreated ProcessStatus = "created"
	StatusRunning ProcessStatus = "running"
	StatusPaused  ProcessStatus = "paused"
	StatusStopped ProcessStatus = "stopped"
)

// ProcessState is a snapshot of one process.
type ProcessState struct {
	ID       string // exec ID, "" for the init
	Pid      int
	Status   ProcessStatus
	Terminal bool
	Exit     *ExitStatus // set once stopped
}

// Container is one container of a sandbox. Process methods take an exec ID;
// "" means the container's init process.
type Container interface {
	ID() string
	// Start runs the init process (execID "") or a created exec.
	Start(ctx context.Context, execID string) error
	// Exec creates an exec process; Start(execID) runs it.
	Exec(ctx context.Context, execID string, p *specs.Process, io IO) error
	Kill(ctx context.Context, execID string, sig syscall.Signal, all bool) error
	// Wait blocks until the process has exited and its output has been
	// copied out, or ctx ends.
	Wait(ctx context.Context, execID string) (ExitStatus, error)
	ResizePty(ctx context.Context, execID string, width, height uint32) error
	CloseIO(ctx context.Context, execID string) error
	State(execID string) (ProcessState, error)
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	Update(ctx context.Context, r *specs.LinuxResources) error
	Stats(ctx context.Context) (*cgroupsv2.Metrics, error)
	// Pids are the container's processes as guest pids.
	Pids(ctx context.Context) ([]int, error)
	// Delete removes an exited exec process, or (execID "") the container
	// with everything mounted for it. Deleting a running process is an
	// error wrapping errdefs.ErrFailedPrecondition.
	Delete(ctx context.Context, execID string) (ExitStatus, error)
}

var (
	registryMu sync.Mutex
	handlers   = map[string]Handler{}
)

// Register makes a handler available by its name.
func Register(h Handler) {
	registryMu.Lock()
	defer registryMu.Unlock()
	handlers[h.Name()] = h
}

// Get returns the handler registered under name.
func Get(name string) (Handler, error) {
	registryMu.Lock()
	defer registryMu.Unlock()
	h, ok := handlers[name]
	if !ok {
		names := make([]string, 0, len(handlers))
		for n := range handlers {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("runtime handler %q is not registered (have %v)", name, names)
	}
	return h, nil
}
