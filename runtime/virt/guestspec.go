package virt

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// guestCgroupParent is where the guest puts containers' cgroups.
const guestCgroupParent = "/joey"

// guestSpec is the spec the guest's libcontainer gets for a container. It
// is a copy of the host's with everything that names the host removed:
//
//   - root.path is the rootfs in the share (root.readonly is kept: the guest
//     enforces it);
//   - mounts are the given ones (bind sources already rewritten to the share);
//   - the network namespace goes (containers use the guest's own, which has
//     the VM's NICs) and no namespace keeps a path (host paths mean nothing
//     in the guest, so each becomes a new namespace);
//   - net.* sysctls go: they belong to that shared network namespace and are
//     set once for the sandbox (see netSysctls), and libcontainer refuses
//     them for a container without its own network namespace;
//   - linux.cgroupsPath is /joey/<id>;
//   - seccomp goes: the static agent has no libseccomp, and the VM is the
//     isolation boundary (Kata's disable_guest_seccomp default);
//   - AppArmor and SELinux labels go: the guest has neither;
//   - hooks go: they are host programs, and the guest cannot run them;
//   - host devices (linux.devices, linux.netDevices) go: the VM has its own.
func guestSpec(ctx context.Context, host *specs.Spec, id, root string, mounts []specs.Mount) (*specs.Spec, error) {
	if host == nil {
		return nil, fmt.Errorf("container %s: spec is nil", id)
	}
	if host.Process == nil {
		return nil, fmt.Errorf("container %s: spec has no process: set process.args to the command to run", id)
	}
	// A deep copy through JSON: the OCI types are JSON-defined, and the
	// caller's spec must stay as it was.
	data, err := json.Marshal(host)
	if err != nil {
		return nil, fmt.Errorf("container %s: copy spec: %w", id, err)
	}
	var g specs.Spec
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("container %s: copy spec: %w", id, err)
	}
	l := log.G(ctx).WithField("container", id)

	readonly := host.Root != nil && host.Root.Readonly
	g.Root = &specs.Root{Path: root, Readonly: readonly}
	g.Mounts = slices.Clone(mounts)
	if g.Hooks != nil {
		l.Warn("dropping the spec's hooks: they are host programs, which the guest cannot run")
		g.Hooks = nil
	}
	g.Process = guestProcess(g.Process)
	if g.Linux == nil {
		g.Linux = &specs.Linux{}
	}
	lx := g.Linux
	lx.MountLabel = ""
	lx.CgroupsPath = path.Join(guestCgroupParent, id)
	if lx.Seccomp != nil {
		l.Debug("dropping seccomp: the VM is the isolation boundary and the guest agent has no libseccomp")
		lx.Seccomp = nil
	}
	if len(lx.Devices) > 0 || len(lx.NetDevices) > 0 {
		l.Debugf("dropping %d host devices and %d host network devices: the VM has its own", len(lx.Devices), len(lx.NetDevices))
		lx.Devices = nil
		lx.NetDevices = nil
	}
	var ns []specs.LinuxNamespace
	for _, n := range lx.Namespaces {
		if n.Type == specs.NetworkNamespace {
			continue
		}
		n.Path = ""
		ns = append(ns, n)
	}
	lx.Namespaces = ns
	for k := range lx.Sysctl {
		if isNetSysctl(k) {
			delete(lx.Sysctl, k)
		}
	}
	return &g, nil
}

// guestProcess is a copy of p without the host's security labels: the
// guest has neither AppArmor nor SELinux. Execs need it too, since
// containerd copies the container's labels into them.
func guestProcess(p *specs.Process) *specs.Process {
	g := *p
	g.ApparmorProfile = ""
	g.SelinuxLabel = ""
	return &g
}

// netSysctls are the sysctls of spec that belong to the network namespace:
// the sandbox sets them in the guest's.
func netSysctls(spec *specs.Spec) map[string]string {
	if spec == nil || spec.Linux == nil {
		return nil
	}
	out := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(spec.Linux.Sysctl)) {
		if isNetSysctl(k) {
			out[k] = spec.Linux.Sysctl[k]
		}
	}
	return out
}

func isNetSysctl(key string) bool {
	return strings.HasPrefix(key, "net.") || strings.HasPrefix(key, "net/")
}
