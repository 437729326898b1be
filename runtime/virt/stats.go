package virt

import (
	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2/stats"

	"github.com/joeyrt/joey/agent/protocol"
)

// metrics maps the agent's cgroup v2 figures onto containerd's cgroup v2
// metrics type; both use the names of the cgroup files, so the mapping is
// one to one.
func metrics(r *protocol.StatsContainerResponse) *cgroupsv2.Metrics {
	m := &cgroupsv2.Metrics{}
	if c := r.GetCpu(); c != nil {
		m.CPU = &cgroupsv2.CPUStat{
			UsageUsec:     c.UsageUsec,
			UserUsec:      c.UserUsec,
			SystemUsec:    c.SystemUsec,
			NrPeriods:     c.NrPeriods,
			NrThrottled:   c.NrThrottled,
			ThrottledUsec: c.ThrottledUsec,
		}
	}
	if mem := r.GetMemory(); mem != nil {
		m.Memory = &cgroupsv2.MemoryStat{
			Usage:         mem.Usage,
			UsageLimit:    mem.UsageLimit,
			MaxUsage:      mem.MaxUsage,
			SwapUsage:     mem.SwapUsage,
			SwapLimit:     mem.SwapLimit,
			Anon:          mem.Anon,
			File:          mem.File,
			KernelStack:   mem.KernelStack,
			Slab:          mem.Slab,
			Sock:          mem.Sock,
			Shmem:         mem.Shmem,
			FileMapped:    mem.FileMapped,
			FileDirty:     mem.FileDirty,
			FileWriteback: mem.FileWriteback,
			Pgfault:       mem.Pgfault,
			Pgmajfault:    mem.Pgmajfault,
			InactiveAnon:  mem.InactiveAnon,
			ActiveAnon:    mem.ActiveAnon,
			InactiveFile:  mem.InactiveFile,
			ActiveFile:    mem.ActiveFile,
			Unevictable:   mem.Unevictable,
		}
		m.MemoryEvents = &cgroupsv2.MemoryEvents{Oom: mem.Oom, OomKill: mem.OomKill}
	}
	if p := r.GetPids(); p != nil {
		m.Pids = &cgroupsv2.PidsStat{Current: p.Current, Limit: p.Limit}
	}
	if len(r.GetIo()) > 0 {
		m.Io = &cgroupsv2.IOStat{}
		for _, e := range r.GetIo() {
			m.Io.Usage = append(m.Io.Usage, &cgroupsv2.IOEntry{
				Major: e.Major, Minor: e.Minor,
				Rbytes: e.Rbytes, Wbytes: e.Wbytes, Rios: e.Rios, Wios: e.Wios,
			})
		}
	}
	return m
}
