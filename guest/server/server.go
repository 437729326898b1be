// Package server is joey-agent's implementation of the agent protocol: it
// maps each ttRPC call onto the guest's container layer, network
// configuration and system settings.
package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/guest/container"
	"github.com/joeyrt/joey/internal/version"
)

// Containers is what the server needs of the container layer
// (guest/container.Manager).
type Containers interface {
	Create(ctx context.Context, id string, spec *specs.Spec, terminal bool) error
	Start(ctx context.Context, id string) error
	Exec(ctx context.Context, id, execID string, p *specs.Process, terminal bool) error
	Signal(ctx context.Context, id, execID string, sig syscall.Signal, all bool) error
	Wait(ctx context.Context, id, execID string) (container.ExitStatus, error)
	Stdio(id, execID string) (*container.IO, error)
	Resize(ctx context.Context, id, execID string, rows, cols uint16) error
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	Update(ctx context.Context, id string, r *specs.LinuxResources) error
	Processes(ctx context.Context, id string) ([]int, error)
	Stats(ctx context.Context, id string) (*cgroups.Stats, error)
	Remove(ctx context.Context, id string) error
	DeleteExec(ctx context.Context, id, execID string) error
}

// Network is what the server needs of the guest's network configuration
// (guest/netconf.Config).
type Network interface {
	UpdateInterface(ctx context.Context, in *protocol.Interface) (*protocol.Interface, error)
	ListInterfaces(ctx context.Context) (*protocol.Interfaces, error)
	UpdateRoutes(ctx context.Context, routes []*protocol.Route) (*protocol.Routes, error)
	ListRoutes(ctx context.Context) (*protocol.Routes, error)
	AddNeighbors(ctx context.Context, ns []*protocol.Neighbor) error
}

// Config is what the server is built from.
type Config struct {
	Containers Containers
	Network    Network
	// OOM delivers the IDs of containers that had an OOM kill.
	OOM <-chan string
	// LoadedModules are the modules loaded at boot, for GuestDetails.
	LoadedModules []string
	// PowerOff ends the VM; DestroySandbox calls it after answering.
	PowerOff func()
	// Root prefixes every guest path the server writes (CopyFile, resolv.conf,
	// hostname files, mount points); "" in the VM, a temp dir in tests.
	Root string
	// Mount mounts a storage; nil means unix.Mount. Tests replace it.
	Mount func(source, target, fstype string, flags uintptr, data string) error
	// Unmount undoes Mount; nil means a lazy unix.Unmount.
	Unmount func(target string) error
}

// Server implements protocol.AgentService.
type Server struct {
	cfg     Config
	started time.Time

	mu        sync.Mutex
	streams   map[procKey]*procIO // guarded by mu
	sandbox   string              // guarded by mu; "" until CreateSandbox
	mounts    []string            // guarded by mu; sandbox storages, in mount order
	ctrMounts map[string][]string // guarded by mu; per-container storages
}

type procKey struct{ container, exec string }

// procIO is the stdio of one process as the server serves it.
type procIO struct {
	stdout, stderr *outputStream
	io             *container.IO
}

var _ protocol.AgentService = (*Server)(nil)

// New returns a server; call Register to serve it.
func New(cfg Config) *Server {
	if cfg.Mount == nil {
		cfg.Mount = unix.Mount
	}
	if cfg.Unmount == nil {
		cfg.Unmount = func(target string) error { return unix.Unmount(target, unix.MNT_DETACH) }
	}
	if cfg.PowerOff == nil {
		cfg.PowerOff = func() {}
	}
	return &Server{cfg: cfg, started: time.Now(), streams: map[procKey]*procIO{}, ctrMounts: map[string][]string{}}
}

func (s *Server) path(p string) string { return s.cfg.Root + p }

// Check answers the host's health check.
func (s *Server) Check(ctx context.Context, _ *protocol.CheckRequest) (*protocol.CheckResponse, error) {
	return &protocol.CheckResponse{Version: version.Version, UptimeSeconds: time.Since(s.started).Seconds()}, nil
}

// GuestDetails describes the guest kernel and its resources.
func (s *Server) GuestDetails(ctx context.Context, _ *protocol.GuestDetailsRequest) (*protocol.GuestDetailsResponse, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, toStatus(fmt.Errorf("uname: %w", err))
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return nil, toStatus(fmt.Errorf("sysinfo: %w", err))
	}
	cpus, err := countOnlineCPUs(s.path("/sys/devices/system/cpu/online"))
	if err != nil {
		return nil, toStatus(err)
	}
	var fss []string
	if b, err := os.ReadFile("/proc/filesystems"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				fss = append(fss, f[len(f)-1])
			}
		}
	}
	_, err = os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return &protocol.GuestDetailsResponse{
		AgentVersion:     version.Version,
		KernelRelease:    unix.ByteSliceToString(uts.Release[:]),
		OnlineCpus:       uint32(cpus),
		MemoryTotalBytes: uint64(si.Totalram) * uint64(si.Unit),
		CgroupV2:         err == nil,
		LoadedModules:    s.cfg.LoadedModules,
		Filesystems:      fss,
	}, nil
}

// toStatus maps errors to ttRPC status codes at the protocol's edge; inside,
// everything stays a Go error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, container.ErrNotFound), errors.Is(err, os.ErrNotExist), errdefs.IsNotFound(err):
		code = codes.NotFound
	case errors.Is(err, container.ErrAlreadyExists), errors.Is(err, os.ErrExist), errdefs.IsAlreadyExists(err):
		code = codes.AlreadyExists
	case errors.Is(err, container.ErrInvalidState), errdefs.IsFailedPrecondition(err):
		code = codes.FailedPrecondition
	case errors.Is(err, errInvalid), errors.Is(err, container.ErrInvalid), errdefs.IsInvalidArgument(err):
		code = codes.InvalidArgument
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// errInvalid marks bad requests.
var errInvalid = errors.New("invalid argument")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}
