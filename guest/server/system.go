package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/joeyrt/joey/agent/protocol"
)

// OnlineCPUMem onlines CPUs until nb_cpus are online (the VM boots with
// spare vCPUs offline, and hotplug needs the guest to take them) and, unless
// cpu_only, every offline memory block.
func (s *Server) OnlineCPUMem(ctx context.Context, req *protocol.OnlineCPUMemRequest) (*protocol.OnlineCPUMemResponse, error) {
	cpuDir := s.path("/sys/devices/system/cpu")
	online, err := countOnlineCPUs(filepath.Join(cpuDir, "online"))
	if err != nil {
		return nil, toStatus(err)
	}
	if want := int(req.NbCpus); want > online {
		cpus, _ := filepath.Glob(filepath.Join(cpuDir, "cpu[0-9]*"))
		for _, c := range cpus {
			if online >= want {
				break
			}
			f := filepath.Join(c, "online")
			b, err := os.ReadFile(f)
			if err != nil || strings.TrimSpace(string(b)) != "0" {
				continue // cpu0 has no online file; others are already on
			}
			if err := os.WriteFile(f, []byte("1"), 0); err != nil {
				return nil, toStatus(fmt.Errorf("online %s: %w", filepath.Base(c), err))
			}
			online++
		}
		if online < want {
			return nil, toStatus(fmt.Errorf("online cpus: %w: asked for %d, the VM has %d", errInvalid, want, online))
		}
	}
	var blocks uint32
	if !req.CpuOnly {
		mems, _ := filepath.Glob(s.path("/sys/devices/system/memory/memory[0-9]*"))
		for _, m := range mems {
			f := filepath.Join(m, "online")
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if strings.TrimSpace(string(b)) == "0" {
				if err := os.WriteFile(f, []byte("1"), 0); err != nil {
					return nil, toStatus(fmt.Errorf("online %s: %w", filepath.Base(m), err))
				}
			}
			blocks++
		}
	}
	return &protocol.OnlineCPUMemResponse{OnlineCpus: uint32(online), OnlineMemoryBlocks: blocks}, nil
}

// countOnlineCPUs parses a CPU list file ("0-3,5").
func countOnlineCPUs(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read online cpus: %w", err)
	}
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("parse cpu list %q: %w", b, err)
		}
		z := a
		if isRange {
			if z, err = strconv.Atoi(hi); err != nil {
				return 0, fmt.Errorf("parse cpu list %q: %w", b, err)
			}
		}
		n += z - a + 1
	}
	return n, nil
}

// CopyFile writes a file into the guest atomically, creating its parents.
func (s *Server) CopyFile(ctx context.Context, req *protocol.CopyFileRequest) (*protocol.Empty, error) {
	if !filepath.IsAbs(req.Path) || filepath.Clean(req.Path) != req.Path {
		return nil, toStatus(invalidf("copy file: path %q must be absolute and clean", req.Path))
	}
	mode := os.FileMode(req.FileMode & 0o7777)
	if mode == 0 {
		mode = 0o644
	}
	dirMode := os.FileMode(req.DirMode & 0o7777)
	if dirMode == 0 {
		dirMode = 0o755
	}
	if err := writeFileAtomic(s.path(req.Path), req.Data, mode, dirMode, int(req.Uid), int(req.Gid)); err != nil {
		return nil, toStatus(fmt.Errorf("copy file %s: %w", req.Path, err))
	}
	return &protocol.Empty{}, nil
}

// writeFileAtomic writes data to a temp file beside path and renames it over
// path, so a reader never sees half a file. uid/gid < 0 keep the owner.
func writeFileAtomic(path string, data []byte, mode, dirMode os.FileMode, uid, gid int) (retErr error) {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if uid >= 0 || gid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func (s *Server) UpdateInterface(ctx context.Context, req *protocol.UpdateInterfaceRequest) (*protocol.Interface, error) {
	if req.Interface == nil {
		return nil, toStatus(invalidf("update interface: interface is missing"))
	}
	in, err := s.cfg.Network.UpdateInterface(ctx, req.Interface)
	return in, toStatus(err)
}

func (s *Server) ListInterfaces(ctx context.Context, _ *protocol.ListInterfacesRequest) (*protocol.Interfaces, error) {
	out, err := s.cfg.Network.ListInterfaces(ctx)
	return out, toStatus(err)
}

func (s *Server) UpdateRoutes(ctx context.Context, req *protocol.UpdateRoutesRequest) (*protocol.Routes, error) {
	out, err := s.cfg.Network.UpdateRoutes(ctx, req.Routes)
	return out, toStatus(err)
}

func (s *Server) ListRoutes(ctx context.Context, _ *protocol.ListRoutesRequest) (*protocol.Routes, error) {
	out, err := s.cfg.Network.ListRoutes(ctx)
	return out, toStatus(err)
}

func (s *Server) AddARPNeighbors(ctx context.Context, req *protocol.AddARPNeighborsRequest) (*protocol.Empty, error) {
	if err := s.cfg.Network.AddNeighbors(ctx, req.Neighbors); err != nil {
		return nil, toStatus(err)
	}
	return &protocol.Empty{}, nil
}
