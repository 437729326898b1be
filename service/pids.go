package service

import (
	"context"
	"fmt"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
)

// pids lists the container's processes by their pids in the guest; an exec
// process is marked with its exec id, as runc's shim does.
func (s *Service) pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	pids, err := c.rc.Pids(ctx)
	if err != nil {
		return nil, fmt.Errorf("pids of %s: %w", c.name(""), err)
	}
	execs := map[int]string{}
	c.mu.Lock()
	ids := make([]string, 0, len(c.procs))
	for id := range c.procs {
		if id != "" {
			ids = append(ids, id)
		}
	}
	c.mu.Unlock()
	for _, id := range ids {
		if ps, err := c.rc.State(id); err == nil && ps.Pid > 0 {
			execs[ps.Pid] = id
		}
	}
	out := make([]*task.ProcessInfo, 0, len(pids))
	for _, pid := range pids {
		info := &task.ProcessInfo{Pid: uint32(pid)}
		if id, ok := execs[pid]; ok {
			a, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: id})
			if err != nil {
				log.G(ctx).WithError(err).Warn("describe exec process")
			} else {
				info.Info = a
			}
		}
		out = append(out, info)
	}
	return &taskAPI.PidsResponse{Processes: out}, nil
}
