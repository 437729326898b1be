package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/guest/boot"
)

// CreateSandbox sets the guest up for the pod: hostname, DNS, kernel modules
// and sysctls, then the sandbox's storages. It is all-or-nothing: storages
// mounted before a failure are unmounted again.
func (s *Server) CreateSandbox(ctx context.Context, req *protocol.CreateSandboxRequest) (_ *protocol.Empty, retErr error) {
	if req.SandboxId == "" {
		return nil, toStatus(invalidf("create sandbox: sandbox_id is empty"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sandbox != "" {
		return nil, toStatus(fmt.Errorf("create sandbox %s: %w: sandbox %s already exists in this VM", req.SandboxId, os.ErrExist, s.sandbox))
	}
	if req.Hostname != "" {
		if err := unix.Sethostname([]byte(req.Hostname)); err != nil {
			return nil, toStatus(fmt.Errorf("create sandbox: set hostname %q: %w", req.Hostname, err))
		}
	}
	if len(req.Dns) > 0 {
		data := strings.Join(req.Dns, "\n") + "\n"
		if err := writeFileAtomic(s.path("/etc/resolv.conf"), []byte(data), 0o644, 0o755, -1, -1); err != nil {
			return nil, toStatus(fmt.Errorf("create sandbox: write resolv.conf: %w", err))
		}
	}
	for _, m := range req.KernelModules {
		if err := loadModuleByName(m.Name, strings.Join(m.Parameters, " ")); err != nil {
			return nil, toStatus(fmt.Errorf("create sandbox: %w", err))
		}
	}
	for k, v := range req.Sysctls {
		if err := setSysctl(s.path("/proc/sys"), k, v); err != nil {
			return nil, toStatus(fmt.Errorf("create sandbox: %w", err))
		}
	}
	mounted, err := s.mountStorages(req.Storages)
	if err != nil {
		return nil, toStatus(fmt.Errorf("create sandbox: %w", err))
	}
	s.mounts = mounted
	s.sandbox = req.SandboxId
	log.G(ctx).WithField("sandbox", req.SandboxId).Info("sandbox created")
	return &protocol.Empty{}, nil
}

// DestroySandbox removes every container, unmounts the storages, and powers
// the VM off once the answer has had time to leave.
func (s *Server) DestroySandbox(ctx context.Context, _ *protocol.DestroySandboxRequest) (*protocol.Empty, error) {
	s.mu.Lock()
	var ids []string
	seen := map[string]bool{}
	for k := range s.streams {
		if !seen[k.container] {
			seen[k.container] = true
			ids = append(ids, k.container)
		}
	}
	s.mu.Unlock()
	for _, id := range ids {
		if _, err := s.RemoveContainer(ctx, &protocol.RemoveContainerRequest{ContainerId: id}); err != nil {
			log.G(ctx).WithError(err).WithField("container", id).Warn("destroy sandbox: remove container")
		}
	}
	s.mu.Lock()
	s.unmountAll(s.mounts)
	s.mounts = nil
	s.sandbox = ""
	s.mu.Unlock()
	// The reply must reach the host before the VM disappears.
	time.AfterFunc(100*time.Millisecond, s.cfg.PowerOff)
	return &protocol.Empty{}, nil
}

// mountStorages mounts each storage in order; on failure it unmounts what
// it mounted and returns the error.
func (s *Server) mountStorages(storages []*protocol.Storage) (mounted []string, retErr error) {
	defer func() {
		if retErr != nil {
			s.unmountAll(mounted)
			mounted = nil
		}
	}()
	for i, st := range storages {
		source, fstype, opts, err := storageMount(st)
		if err != nil {
			return mounted, fmt.Errorf("storage %d: %w", i, err)
		}
		target := s.path(st.MountPoint)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return mounted, fmt.Errorf("storage %d: mkdir %s: %w", i, st.MountPoint, err)
		}
		flags, data := mountFlags(opts)
		if err := s.cfg.Mount(source, target, fstype, flags, data); err != nil {
			return mounted, fmt.Errorf("storage %d: mount %s (%s) on %s: %w", i, source, fstype, st.MountPoint, err)
		}
		mounted = append(mounted, target)
	}
	return mounted, nil
}

// storageMount turns a protocol storage into mount(2) arguments.
func storageMount(st *protocol.Storage) (source, fstype string, opts []string, err error) {
	if st.MountPoint == "" || !filepath.IsAbs(st.MountPoint) {
		return "", "", nil, invalidf("mount_point %q must be an absolute guest path", st.MountPoint)
	}
	opts = st.Options
	switch st.Driver {
	case "9p":
		if st.Source == "" {
			return "", "", nil, invalidf("9p storage needs source (the mount tag)")
		}
		if !hasOptionPrefix(opts, "trans=") {
			opts = append([]string{"trans=virtio", "version=9p2000.L", "msize=262144", "cache=mmap"}, opts...)
		}
		return st.Source, "9p", opts, nil
	case "virtio-fs":
		if st.Source == "" {
			return "", "", nil, invalidf("virtio-fs storage needs source (the tag)")
		}
		return st.Source, "virtiofs", opts, nil
	case "blk":
		if st.Fstype == "" {
			return "", "", nil, invalidf("blk storage %s needs fstype", st.Source)
		}
		return st.Source, st.Fstype, opts, nil
	case "tmpfs":
		return "tmpfs", "tmpfs", opts, nil
	}
	return "", "", nil, invalidf("storage driver %q unknown (want 9p, virtio-fs, blk or tmpfs)", st.Driver)
}

func hasOptionPrefix(opts []string, prefix string) bool {
	for _, o := range opts {
		if strings.HasPrefix(o, prefix) {
			return true
		}
	}
	return false
}

// mountFlags splits mount options into flags and the data string.
func mountFlags(opts []string) (uintptr, string) {
	known := map[string]uintptr{
		"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV,
		"noexec": unix.MS_NOEXEC, "sync": unix.MS_SYNCHRONOUS, "noatime": unix.MS_NOATIME,
		"relatime": unix.MS_RELATIME, "bind": unix.MS_BIND, "rbind": unix.MS_BIND | unix.MS_REC,
	}
	var flags uintptr
	var data []string
	for _, o := range opts {
		if f, ok := known[o]; ok {
			flags |= f
		} else if o != "rw" && o != "" {
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}

func (s *Server) unmountAll(targets []string) {
	for i := len(targets) - 1; i >= 0; i-- {
		if err := s.cfg.Unmount(targets[i]); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			log.L.WithError(err).WithField("target", targets[i]).Warn("unmount storage")
		}
	}
}

// loadModuleByName finds name's .ko under the running kernel's module tree
// (the image only ships what it was built with) and loads it.
func loadModuleByName(name, params string) error {
	if name == "" || strings.ContainsAny(name, "/") {
		return invalidf("kernel module name %q", name)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return err
	}
	root := filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]))
	want := strings.ReplaceAll(name, "-", "_")
	var found string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && boot.ModuleName(p) == want && strings.HasSuffix(p, ".ko") {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		return fmt.Errorf("kernel module %q: %w in the guest image (rebuild it with the module included)", name, os.ErrNotExist)
	}
	return boot.LoadModule(found, params)
}

// setSysctl writes one sysctl, refusing names that would escape /proc/sys.
func setSysctl(procSys, name, value string) error {
	if name == "" || strings.Contains(name, "..") || strings.ContainsAny(name, "/") && strings.Contains(name, ".") {
		return invalidf("sysctl name %q", name)
	}
	p := filepath.Join(procSys, strings.ReplaceAll(name, ".", "/"))
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}
