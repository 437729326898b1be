package virt

import (
	"testing"

	"github.com/joeyrt/joey/agent/protocol"
)

func TestMetricsCarryEveryFigureAcross(t *testing.T) {
	m := metrics(&protocol.StatsContainerResponse{
		Cpu:    &protocol.CPUStats{UsageUsec: 1, UserUsec: 2, SystemUsec: 3, NrPeriods: 4, NrThrottled: 5, ThrottledUsec: 6},
		Memory: &protocol.MemoryStats{Usage: 10, UsageLimit: 11, Anon: 12, File: 13, Oom: 14, OomKill: 15, SwapUsage: 16},
		Pids:   &protocol.PidsStats{Current: 20, Limit: 21},
		Io:     []*protocol.IOEntry{{Major: 254, Minor: 0, Rbytes: 30, Wbytes: 31, Rios: 32, Wios: 33}},
	})
	c, mem, ev, p := m.CPU, m.Memory, m.MemoryEvents, m.Pids
	switch {
	case c.UsageUsec != 1 || c.UserUsec != 2 || c.SystemUsec != 3 || c.NrPeriods != 4 || c.NrThrottled != 5 || c.ThrottledUsec != 6:
		t.Errorf("cpu %+v", c)
	case mem.Usage != 10 || mem.UsageLimit != 11 || mem.Anon != 12 || mem.File != 13 || mem.SwapUsage != 16:
		t.Errorf("memory %+v", mem)
	case ev.Oom != 14 || ev.OomKill != 15:
		t.Errorf("memory events %+v", ev)
	case p.Current != 20 || p.Limit != 21:
		t.Errorf("pids %+v", p)
	case len(m.Io.Usage) != 1 || m.Io.Usage[0].Major != 254 || m.Io.Usage[0].Rbytes != 30 || m.Io.Usage[0].Wios != 33:
		t.Errorf("io %+v", m.Io)
	}
}

func TestMetricsOfAnEmptyResponseHaveNoSections(t *testing.T) {
	m := metrics(&protocol.StatsContainerResponse{})
	if m.CPU != nil || m.Memory != nil || m.Pids != nil || m.Io != nil {
		t.Fatalf("got %+v", m)
	}
}
