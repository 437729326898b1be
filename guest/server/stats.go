package server

import (
	"context"
	"fmt"

	"github.com/opencontainers/cgroups"

	"github.com/joeyrt/joey/agent/protocol"
)

// StatsContainer returns the container's cgroup v2 figures.
func (s *Server) StatsContainer(ctx context.Context, req *protocol.StatsContainerRequest) (*protocol.StatsContainerResponse, error) {
	st, err := s.cfg.Containers.Stats(ctx, req.ContainerId)
	if err != nil {
		return nil, toStatus(fmt.Errorf("stats of %s: %w", req.ContainerId, err))
	}
	return statsToProto(st), nil
}

// statsToProto maps libcontainer's stats (nanoseconds, per-file maps) onto
// the protocol's cgroup v2 names and units.
func statsToProto(st *cgroups.Stats) *protocol.StatsContainerResponse {
	cu := st.CpuStats.CpuUsage
	th := st.CpuStats.ThrottlingData
	m := st.MemoryStats
	ms := m.Stats
	out := &protocol.StatsContainerResponse{
		Cpu: &protocol.CPUStats{
			UsageUsec:     cu.TotalUsage / 1000,
			UserUsec:      cu.UsageInUsermode / 1000,
			SystemUsec:    cu.UsageInKernelmode / 1000,
			NrPeriods:     th.Periods,
			NrThrottled:   th.ThrottledPeriods,
			ThrottledUsec: th.ThrottledTime / 1000,
		},
		Memory: &protocol.MemoryStats{
			Usage:         m.Usage.Usage,
			UsageLimit:    m.Usage.Limit,
			MaxUsage:      m.Usage.MaxUsage,
			SwapUsage:     m.SwapOnlyUsage.Usage,
			SwapLimit:     m.SwapOnlyUsage.Limit,
			Anon:          ms["anon"],
			File:          ms["file"],
			KernelStack:   ms["kernel_stack"],
			Slab:          ms["slab"],
			Sock:          ms["sock"],
			Shmem:         ms["shmem"],
			FileMapped:    ms["file_mapped"],
			FileDirty:     ms["file_dirty"],
			FileWriteback: ms["file_writeback"],
			Pgfault:       ms["pgfault"],
			Pgmajfault:    ms["pgmajfault"],
			InactiveAnon:  ms["inactive_anon"],
			ActiveAnon:    ms["active_anon"],
			InactiveFile:  ms["inactive_file"],
			ActiveFile:    ms["active_file"],
			Unevictable:   ms["unevictable"],
			Oom:           ms["oom"],
			OomKill:       ms["oom_kill"],
		},
		Pids: &protocol.PidsStats{Current: st.PidsStats.Current, Limit: st.PidsStats.Limit},
	}
	type dev struct{ major, minor uint64 }
	io := map[dev]*protocol.IOEntry{}
	var order []dev
	entry := func(major, minor uint64) *protocol.IOEntry {
		d := dev{major, minor}
		e, ok := io[d]
		if !ok {
			e = &protocol.IOEntry{Major: major, Minor: minor}
			io[d] = e
			order = append(order, d)
		}
		return e
	}
	for _, b := range st.BlkioStats.IoServiceBytesRecursive {
		switch b.Op {
		case "Read", "read":
			entry(b.Major, b.Minor).Rbytes = b.Value
		case "Write", "write":
			entry(b.Major, b.Minor).Wbytes = b.Value
		}
	}
	for _, b := range st.BlkioStats.IoServicedRecursive {
		switch b.Op {
		case "Read", "read":
			entry(b.Major, b.Minor).Rios = b.Value
		case "Write", "write":
			entry(b.Major, b.Minor).Wios = b.Value
		}
	}
	for _, d := range order {
		out.Io = append(out.Io, io[d])
	}
	return out
}
