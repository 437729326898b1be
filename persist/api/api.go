// Package api holds the data joey persists about sandboxes, separate from
// how it is stored (package persist), so the format can be read and
// versioned on its own. Everything here is plain JSON.
//
// Compatibility: adding an optional field does not change Version, because
// readers ignore fields they do not know. Renaming or removing a field, or
// changing what one means, bumps Version; a joey then refuses state written
// by a newer one rather than misreading it.
package api

import "time"

// Version is the version of the state format this joey writes and the newest
// it reads.
const Version = 1

// SandboxStatus is where a sandbox is in its life.
type SandboxStatus string

const (
	// SandboxCreating: resources are being set up. A sandbox found in this
	// state after a crash may hold any subset of them; cleanup frees all.
	SandboxCreating SandboxStatus = "creating"
	SandboxRunning  SandboxStatus = "running"
	SandboxStopped  SandboxStatus = "stopped"
)

// ContainerStatus follows containerd's task states.
type ContainerStatus string

const (
	ContainerCreated ContainerStatus = "created"
	ContainerRunning ContainerStatus = "running"
	ContainerPaused  ContainerStatus = "paused"
	ContainerStopped ContainerStatus = "stopped"
)

// SandboxState is one pod: the VM and every host resource the runtime made
// for it. The resource fields are what `containerd-shim-joey-v2 delete`
// frees when the shim that made them is gone, so the runtime records each
// resource before it creates it and saves.
type SandboxState struct {
	Version   int           `json:"version"`
	ID        string        `json:"id"`
	Namespace string        `json:"namespace"`
	Status    SandboxStatus `json:"status"`
	CreatedAt time.Time     `json:"created_at"`
	// Bundle is the OCI bundle of the sandbox's first container.
	Bundle string `json:"bundle,omitempty"`

	// Hypervisor is the driver's name ("qemu", "builtin").
	Hypervisor string  `json:"hypervisor"`
	VMM        VMM     `json:"vmm"`
	Network    Network `json:"network"`
	// ShareDir is the host directory shared with the guest; container
	// rootfs are mounted under it.
	ShareDir string `json:"share_dir,omitempty"`
	// Mounts are host mount points the runtime made for the sandbox, in
	// the order it made them; cleanup unmounts them in reverse.
	Mounts []string `json:"mounts,omitempty"`
	// Cgroups are cgroup paths the runtime created, relative to each
	// hierarchy's root (like an OCI linux.cgroupsPath); cleanup removes them.
	Cgroups []string `json:"cgroups,omitempty"`

	// Containers by ID, the sandbox's own container included.
	Containers map[string]ContainerState `json:"containers,omitempty"`
}

// Process names one host process beyond pid reuse: cleanup signals Pid only
// while its start time is still StartTime (see internal/procutil).
type Process struct {
	// Name says what the process is, for logs: "qemu-system-x86_64",
	// "virtiofsd".
	Name string `json:"name,omitempty"`
	Pid  int    `json:"pid"`
	// StartTime is field 22 of /proc/PID/stat: clock ticks after boot.
	StartTime uint64 `json:"start_time"`
}

// VMM is the virtual machine monitor and what it leaves on the host.
type VMM struct {
	// Process is the VMM's own process. Pid is 0 when the VMM ran inside the
	// shim (the built-in one), which ended with the shim.
	Process
	// StateDir holds the VMM's sockets, logs and pid files.
	StateDir string `json:"state_dir,omitempty"`
	// Sockets are unix sockets to remove (QMP, console, agent).
	Sockets []string `json:"sockets,omitempty"`
	// Helpers are processes the VMM needs, such as virtiofsd, stopped with it.
	Helpers []Process `json:"helpers,omitempty"`
}

// Network is how the pod's network reaches the VM.
type Network struct {
	// NetNS is the path of the pod's network namespace, where the TAPs live.
	NetNS string `json:"netns,omitempty"`
	// OwnNetNS is true when the runtime created NetNS (no CNI, `joey run`),
	// so cleanup removes it too.
	OwnNetNS bool `json:"own_netns,omitempty"`
	// Model is the network model in use: "tcfilter" or "macvtap".
	Model     string     `json:"model,omitempty"`
	Endpoints []Endpoint `json:"endpoints,omitempty"`
}

// Endpoint is one pod interface joined to the VM.
type Endpoint struct {
	// Interface is the pod's interface in NetNS (e.g. "eth0"). Under
	// tcfilter the runtime added an ingress qdisc to it, which cleanup removes.
	Interface string `json:"interface"`
	// Tap is the TAP or macvtap device the runtime created in NetNS.
	Tap string `json:"tap"`
}

// Taps lists the devices the runtime created in NetNS.
func (n Network) Taps() []string {
	taps := make([]string, 0, len(n.Endpoints))
	for _, e := range n.Endpoints {
		taps = append(taps, e.Tap)
	}
	return taps
}

// ContainerState is one container of a sandbox.
type ContainerState struct {
	ID     string          `json:"id"`
	Status ContainerStatus `json:"status"`
	Bundle string          `json:"bundle,omitempty"`
	// Image is the image reference, for `joey ps`; "" when unknown.
	Image string `json:"image,omitempty"`
	// Rootfs is the host mount point of the container's root filesystem.
	Rootfs string `json:"rootfs,omitempty"`
	// Mounts are other host mount points made for the container (volumes
	// bound into the share), in the order made; unmounted in reverse.
	Mounts []string `json:"mounts,omitempty"`
	// Pid is the pid the shim reports to containerd for the container's
	// init process.
	Pid uint32 `json:"pid,omitempty"`
	// ExitStatus is set once the container's init process has exited.
	ExitStatus *uint32   `json:"exit_status,omitempty"`
	ExitedAt   time.Time `json:"exited_at,omitzero"`
	CreatedAt  time.Time `json:"created_at"`
	// Annotations are the OCI spec's annotations, for `joey inspect`.
	Annotations map[string]string `json:"annotations,omitempty"`
}
