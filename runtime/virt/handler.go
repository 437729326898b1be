// Package virt is the runtime handler that runs every sandbox in its own
// lightweight VM (Kata Containers' model): the VM boots the guest image, the
// guest agent runs the containers with libcontainer, and the containers'
// root filesystems and volumes reach the guest through one shared directory.
//
// The handler registers itself as "virt". The hypervisor driver named by
// runtime.hypervisor must have been registered with the hypervisor package
// by the program (the shim, joey).
package virt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/joeyrt/joey/agent"
	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/internal/procutil"
	"github.com/joeyrt/joey/persist"
	"github.com/joeyrt/joey/persist/api"
	"github.com/joeyrt/joey/resource/sharefs"
	"github.com/joeyrt/joey/runtime"
)

// Name is the name the handler is registered under.
const Name = "virt"

func init() { runtime.Register(&Handler{}) }

// Handler creates VM sandboxes and cleans up after them.
type Handler struct {
	// cfg tells Cleanup where state lives; nil loads the configuration the
	// way the shim does (config.Load("")). CreateSandbox uses the config
	// of its request.
	cfg *config.Config
}

var _ runtime.Handler = (*Handler)(nil)

// New returns a handler whose Cleanup reads state under cfg's
// runtime.state_dir. A program with its own configuration file registers
// it (runtime.Register) in place of the default one.
func New(cfg *config.Config) *Handler { return &Handler{cfg: cfg} }

// Name implements runtime.Handler.
func (h *Handler) Name() string { return Name }

// Guest paths the sandbox sets up besides the share.
const (
	// guestShmDir is the tmpfs the pod's containers share as /dev/shm.
	guestShmDir = "/run/joey/sandbox/shm"
	shmOptions  = "size=65536k"
)

// CreateSandbox implements runtime.Handler: it boots the VM and prepares
// the guest. Every step's resources are recorded before they are made, and
// a failure undoes all of them.
func (h *Handler) CreateSandbox(ctx context.Context, sc runtime.SandboxConfig) (_ runtime.Sandbox, retErr error) {
	if err := validateSandboxConfig(sc); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox", sc.ID))
	cfg := sc.Config
	host, err := thisHost()
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	size, err := sizeVM(cfg, sc.Spec, host)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w: %w", sc.ID, errdefs.ErrInvalidArgument, err)
	}
	drv, err := hypervisor.Get(cfg.Runtime.Hypervisor)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	if err := supported(cfg); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	if err := checkImage(cfg); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	store, err := persist.NewStore(cfg.Runtime.StateDir)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	dir, err := store.Dir(sc.Namespace, sc.ID)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("create sandbox %s: state directory %s exists (err: %v): %w; if no shim runs it, clean it up with `containerd-shim-joey-v2 delete`",
			sc.ID, dir, err, errdefs.ErrAlreadyExists)
	}

	share := sharefs.New(dir)
	vmDir := filepath.Join(dir, "vm")
	sb := newSandbox(sc, dir, share, &stateKeeper{store: store, st: &api.SandboxState{
		ID:         sc.ID,
		Namespace:  sc.Namespace,
		Status:     api.SandboxCreating,
		CreatedAt:  time.Now().UTC(),
		Bundle:     sc.Bundle,
		Hypervisor: drv.Name(),
		ShareDir:   share.Dir,
		VMM:        api.VMM{Process: api.Process{Name: drv.Name()}, StateDir: vmDir},
	}})
	defer func() {
		if retErr != nil {
			if err := sb.teardown(context.WithoutCancel(ctx)); err != nil {
				log.G(ctx).WithError(err).Error("create sandbox failed and its rollback failed too")
				retErr = errors.Join(retErr, fmt.Errorf("rollback: %w", err))
			}
		}
	}()
	if err := sb.state.update(ctx, func(*api.SandboxState) {}); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}

	if err := share.Setup(ctx, sb.state.recordSandboxMount); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	sb.net = newNetShape(cfg, size.VCPUs)
	nics, err := sb.setupNetwork(ctx, podNetNS(sc.Spec))
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	ownNetNS := wantsOwnNetNS(sc.Spec)
	vmcfg := vmConfig(cfg, sc.ID, size, dir, share)
	vmcfg.Net = nics // Start owns their files from here on, whatever happens
	vmcfg.HotplugSlots = hotplugSlots(cfg, ownNetNS)
	start := time.Now()
	vm, err := sb.startVM(ctx, drv, ownNetNS, vmcfg)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	sb.vm = vm
	if err := sb.recordVMM(ctx); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	client, err := connect(ctx, vm, cfg.Agent.DialTimeout.Duration)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w%s", sc.ID, err, consoleTail(vmcfg.ConsoleLog))
	}
	sb.agent = client
	booted := time.Since(start)
	_, err = client.CreateSandbox(ctx, &protocol.CreateSandboxRequest{
		SandboxId: sc.ID,
		Hostname:  guestHostname(sc),
		Storages: []*protocol.Storage{share.Storage(), {
			Driver: "tmpfs", Source: "tmpfs", Fstype: "tmpfs", MountPoint: guestShmDir,
			Options: []string{"nosuid", "nodev", "noexec", "mode=1777", shmOptions},
		}},
		Sysctls: netSysctls(sc.Spec),
	})
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: agent: %w", sc.ID, agentErr(err))
	}
	sb.guestReady = true
	if err := sb.configureGuestNetwork(ctx); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	if err := sb.state.update(ctx, func(st *api.SandboxState) { st.Status = api.SandboxRunning }); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", sc.ID, err)
	}
	sb.startWatchers(ctx)
	log.G(ctx).WithField("vcpus", size.VCPUs).WithField("memory_mib", size.MemoryMiB).
		WithField("boot", booted.Round(time.Millisecond)).Info("sandbox running")
	return sb, nil
}

func validateSandboxConfig(sc runtime.SandboxConfig) error {
	switch {
	case sc.Config == nil:
		return fmt.Errorf("%w: no configuration: pass config.Default() or a loaded one", errdefs.ErrInvalidArgument)
	case sc.Spec == nil:
		return fmt.Errorf("%w: no OCI spec: the sandbox's first container's spec sizes the VM", errdefs.ErrInvalidArgument)
	}
	if err := persist.ValidateID(sc.Namespace); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	return persist.ValidateID(sc.ID)
}

// supported refuses what this handler cannot do yet, saying why.
func supported(cfg *config.Config) error {
	if cfg.Runtime.Hypervisor != config.HypervisorQEMU {
		return nil
	}
	q := cfg.Hypervisor.QEMU
	if q.SharedFS == config.SharedFSVirtioFS {
		return fmt.Errorf("hypervisor.qemu.shared_fs = %q: the virt runtime does not run virtiofsd yet; set it to %q: %w",
			q.SharedFS, config.SharedFS9P, errdefs.ErrNotImplemented)
	}
	if q.AgentChannel == config.AgentChannelVsock {
		return fmt.Errorf("hypervisor.qemu.agent_channel = %q: the virt runtime does not allocate guest CIDs yet; set it to %q: %w",
			q.AgentChannel, config.AgentChannelSerial, errdefs.ErrNotImplemented)
	}
	return nil
}

// checkImage fails early, with the keys to fix, when the guest image is
// not where the configuration says.
func checkImage(cfg *config.Config) error {
	for _, f := range []struct{ what, path string }{
		{"kernel", cfg.Image.KernelPath()},
		{"initrd", cfg.Image.InitrdPath()},
	} {
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("guest %s: %w: set image.dir (or image.%s) in %s, or build the image with `joey image build`",
				f.what, err, f.what, configName(cfg))
		}
	}
	return nil
}

// vmConfig describes the sandbox's VM for the hypervisor driver.
func vmConfig(cfg *config.Config, id string, size vmSize, dir string, share *sharefs.Share) *hypervisor.Config {
	vc := &hypervisor.Config{
		ID:           vmID(id),
		VCPUs:        size.VCPUs,
		MaxVCPUs:     size.MaxVCPUs,
		MemoryMiB:    size.MemoryMiB,
		Kernel:       cfg.Image.KernelPath(),
		Initrd:       cfg.Image.InitrdPath(),
		KernelParams: append(slices.Clone(cfg.Image.KernelParams), "joey.log="+cfg.Agent.LogLevel),
		StateDir:     filepath.Join(dir, "vm"),
		ConsoleLog:   filepath.Join(dir, "console.log"),
		AgentChannel: hypervisor.AgentChannel{Kind: hypervisor.ChannelSerial},
		SharedFS:     []hypervisor.SharedFS{share.Device()},
	}
	switch cfg.Runtime.Hypervisor {
	case config.HypervisorQEMU:
		q := cfg.Hypervisor.QEMU
		vc.Machine = q.Machine
		vc.Accel = hypervisor.Accel(q.Accel)
		vc.DebugConsole = q.DebugConsole
	case config.HypervisorBuiltin:
		vc.DebugConsole = cfg.Hypervisor.Builtin.DebugConsole
		if cfg.Hypervisor.Builtin.AgentChannel == config.AgentChannelVsock {
			// The VM's vsock device is its own, served in process: no
			// host-wide CID space to allocate from.
			vc.AgentChannel = hypervisor.AgentChannel{Kind: hypervisor.ChannelVsock, GuestCID: builtinGuestCID, Port: agentVsockPort}
		}
	}
	return vc
}

// The built-in VMM's vsock agent channel: the first CID a guest may have,
// and the agent's customary port (Kata's too).
const (
	builtinGuestCID = 3
	agentVsockPort  = 1024
)

// vmID is the sandbox ID as the hypervisor takes it: containerd's IDs are
// up to 76 characters of the same alphabet, VM IDs up to 64.
func vmID(id string) string {
	if len(id) > 64 {
		return id[:64]
	}
	return id
}

// connect dials the agent until it answers, the dial timeout passes, or the
// VM ends (then the error says how it ended).
func connect(ctx context.Context, vm hypervisor.VM, timeout time.Duration) (*agent.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() {
		select {
		case <-vm.Wait():
			cancel()
		case <-ctx.Done():
		}
	}()
	c, err := agent.Connect(ctx, vm.AgentConn)
	if err != nil {
		select {
		case <-vm.Wait():
			return nil, fmt.Errorf("the VM ended before its agent answered: %w", vmExitErr(vm))
		default:
		}
		return nil, fmt.Errorf("%w (agent.dial_timeout is %v)", err, timeout)
	}
	return c, nil
}

// consoleLines is how much of the guest's console a failed boot reports:
// the state directory, and the log with it, is gone after the rollback.
const consoleLines = 15

// consoleTail renders the end of the guest's console log for an error.
func consoleTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return "; the guest printed nothing on its console"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > consoleLines {
		lines = lines[len(lines)-consoleLines:]
	}
	return "; the guest console ended with:\n" + strings.Join(lines, "\n")
}

func vmExitErr(vm hypervisor.VM) error {
	if err := vm.ExitErr(); err != nil {
		return err
	}
	return errors.New("the VMM exited with status 0 (the guest powered off)")
}

// recordVMM saves the VMM's pid with its start time, so a cleanup never
// kills a process that merely inherited the pid.
func (s *sandbox) recordVMM(ctx context.Context) error {
	pid := s.vm.Pid()
	var st uint64
	if pid > 0 {
		var err error
		if st, err = procutil.StartTime(pid); err != nil {
			return fmt.Errorf("record vmm: %w", err)
		}
	}
	return s.state.update(ctx, func(state *api.SandboxState) {
		state.VMM.Pid = pid
		state.VMM.StartTime = st
	})
}

// guestHostname is the spec's hostname, or the sandbox ID when it has none:
// runc would show the host's name there, which a VM should not leak.
func guestHostname(sc runtime.SandboxConfig) string {
	if sc.Spec.Hostname != "" {
		return sc.Spec.Hostname
	}
	const max = 63 // a hostname label
	if len(sc.ID) > max {
		return sc.ID[:max]
	}
	return sc.ID
}
