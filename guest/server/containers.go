package server

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/agent/protocol"
)

// CreateContainer mounts the container's storages and creates it from the
// OCI spec; the user's process waits until StartContainer.
func (s *Server) CreateContainer(ctx context.Context, req *protocol.CreateContainerRequest) (_ *protocol.Empty, retErr error) {
	if req.ContainerId == "" {
		return nil, toStatus(invalidf("create container: container_id is empty"))
	}
	var spec specs.Spec
	if err := json.Unmarshal(req.OciSpec, &spec); err != nil {
		return nil, toStatus(invalidf("create container %s: oci_spec is not a JSON runtime spec: %v", req.ContainerId, err))
	}
	if spec.Process == nil {
		return nil, toStatus(invalidf("create container %s: oci_spec has no process", req.ContainerId))
	}
	mounted, err := s.mountStorages(req.Storages)
	if err != nil {
		return nil, toStatus(fmt.Errorf("create container %s: %w", req.ContainerId, err))
	}
	defer func() {
		if retErr != nil {
			s.unmountAll(mounted)
		}
	}()
	if err := s.cfg.Containers.Create(ctx, req.ContainerId, &spec, spec.Process.Terminal); err != nil {
		return nil, toStatus(fmt.Errorf("create container %s: %w", req.ContainerId, err))
	}
	if err := s.attach(req.ContainerId, ""); err != nil {
		s.cfg.Containers.Remove(ctx, req.ContainerId)
		return nil, toStatus(err)
	}
	s.mu.Lock()
	s.ctrMounts[req.ContainerId] = mounted
	s.mu.Unlock()
	return &protocol.Empty{}, nil
}

// attach starts buffering the stdio of a new process.
func (s *Server) attach(id, execID string) error {
	pio, err := s.cfg.Containers.Stdio(id, execID)
	if err != nil {
		return fmt.Errorf("stdio of %s/%s: %w", id, execID, err)
	}
	p := &procIO{io: pio, stdout: newOutputStream(pio.Stdout)}
	if pio.Stderr != nil {
		p.stderr = newOutputStream(pio.Stderr)
	}
	s.mu.Lock()
	s.streams[procKey{id, execID}] = p
	s.mu.Unlock()
	return nil
}

func (s *Server) StartContainer(ctx context.Context, req *protocol.StartContainerRequest) (*protocol.Empty, error) {
	if err := s.cfg.Containers.Start(ctx, req.ContainerId); err != nil {
		return nil, toStatus(fmt.Errorf("start container %s: %w", req.ContainerId, err))
	}
	return &protocol.Empty{}, nil
}

// RemoveContainer kills what still runs in the container, removes it and
// unmounts its storages.
func (s *Server) RemoveContainer(ctx context.Context, req *protocol.RemoveContainerRequest) (*protocol.Empty, error) {
	if err := s.cfg.Containers.Remove(ctx, req.ContainerId); err != nil {
		return nil, toStatus(fmt.Errorf("remove container %s: %w", req.ContainerId, err))
	}
	s.mu.Lock()
	for k := range s.streams {
		if k.container == req.ContainerId {
			delete(s.streams, k)
		}
	}
	mounted := s.ctrMounts[req.ContainerId]
	delete(s.ctrMounts, req.ContainerId)
	s.mu.Unlock()
	s.unmountAll(mounted)
	return &protocol.Empty{}, nil
}

func (s *Server) ExecProcess(ctx context.Context, req *protocol.ExecProcessRequest) (*protocol.Empty, error) {
	if req.ExecId == "" {
		return nil, toStatus(invalidf("exec in %s: exec_id is empty", req.ContainerId))
	}
	var p specs.Process
	if err := json.Unmarshal(req.Process, &p); err != nil {
		return nil, toStatus(invalidf("exec %s in %s: process is not a JSON OCI process: %v", req.ExecId, req.ContainerId, err))
	}
	if err := s.cfg.Containers.Exec(ctx, req.ContainerId, req.ExecId, &p, p.Terminal); err != nil {
		return nil, toStatus(fmt.Errorf("exec %s in %s: %w", req.ExecId, req.ContainerId, err))
	}
	if err := s.attach(req.ContainerId, req.ExecId); err != nil {
		s.cfg.Containers.Signal(ctx, req.ContainerId, req.ExecId, syscall.SIGKILL, false)
		return nil, toStatus(err)
	}
	return &protocol.Empty{}, nil
}

func (s *Server) SignalProcess(ctx context.Context, req *protocol.SignalProcessRequest) (*protocol.Empty, error) {
	if req.Signal == 0 || req.Signal > 64 {
		return nil, toStatus(invalidf("signal %s/%s: signal %d out of range 1..64", req.ContainerId, req.ExecId, req.Signal))
	}
	if err := s.cfg.Containers.Signal(ctx, req.ContainerId, req.ExecId, syscall.Signal(req.Signal), req.All); err != nil {
		return nil, toStatus(fmt.Errorf("signal %d to %s/%s: %w", req.Signal, req.ContainerId, req.ExecId, err))
	}
	return &protocol.Empty{}, nil
}

func (s *Server) WaitProcess(ctx context.Context, req *protocol.WaitProcessRequest) (*protocol.WaitProcessResponse, error) {
	st, err := s.cfg.Containers.Wait(ctx, req.ContainerId, req.ExecId)
	if err != nil {
		return nil, toStatus(fmt.Errorf("wait %s/%s: %w", req.ContainerId, req.ExecId, err))
	}
	if req.ExecId != "" {
		s.forgetExecWhenDrained(req.ContainerId, req.ExecId)
	}
	return &protocol.WaitProcessResponse{Status: int32(st.Code), ExitedAtUnixNano: st.ExitedAt.UnixNano()}, nil
}

// execLinger bounds how long an exited exec's unread output is kept for a
// host that never reads it.
const execLinger = 2 * time.Minute

// forgetExecWhenDrained releases an exited exec once the host has read its
// output to the end: an exec holds pipe ends until it is deleted, so
// periodic exec probes would otherwise pile up descriptors. The protocol
// has no call for this because the host never needs an exec after that.
func (s *Server) forgetExecWhenDrained(id, execID string) {
	p, err := s.proc(id, execID)
	if err != nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), execLinger)
		defer cancel()
		for _, st := range []*outputStream{p.stdout, p.stderr} {
			if st == nil {
				continue
			}
			select {
			case <-st.drained:
			case <-ctx.Done():
			}
		}
		s.mu.Lock()
		if s.streams[procKey{id, execID}] == p {
			delete(s.streams, procKey{id, execID})
		}
		s.mu.Unlock()
		s.cfg.Containers.DeleteExec(context.Background(), id, execID)
	}()
}

func (s *Server) ListProcesses(ctx context.Context, req *protocol.ListProcessesRequest) (*protocol.ListProcessesResponse, error) {
	pids, err := s.cfg.Containers.Processes(ctx, req.ContainerId)
	if err != nil {
		return nil, toStatus(fmt.Errorf("list processes of %s: %w", req.ContainerId, err))
	}
	resp := &protocol.ListProcessesResponse{}
	for _, p := range pids {
		resp.Pids = append(resp.Pids, int32(p))
	}
	return resp, nil
}

func (s *Server) PauseContainer(ctx context.Context, req *protocol.PauseContainerRequest) (*protocol.Empty, error) {
	if err := s.cfg.Containers.Pause(ctx, req.ContainerId); err != nil {
		return nil, toStatus(fmt.Errorf("pause %s: %w", req.ContainerId, err))
	}
	return &protocol.Empty{}, nil
}

func (s *Server) ResumeContainer(ctx context.Context, req *protocol.ResumeContainerRequest) (*protocol.Empty, error) {
	if err := s.cfg.Containers.Resume(ctx, req.ContainerId); err != nil {
		return nil, toStatus(fmt.Errorf("resume %s: %w", req.ContainerId, err))
	}
	return &protocol.Empty{}, nil
}

func (s *Server) UpdateContainer(ctx context.Context, req *protocol.UpdateContainerRequest) (*protocol.Empty, error) {
	var r specs.LinuxResources
	if err := json.Unmarshal(req.Resources, &r); err != nil {
		return nil, toStatus(invalidf("update %s: resources is not JSON OCI LinuxResources: %v", req.ContainerId, err))
	}
	if err := s.cfg.Containers.Update(ctx, req.ContainerId, &r); err != nil {
		return nil, toStatus(fmt.Errorf("update %s: %w", req.ContainerId, err))
	}
	return &protocol.Empty{}, nil
}

// GetOOMEvent waits for the next OOM kill in any container.
func (s *Server) GetOOMEvent(ctx context.Context, _ *protocol.GetOOMEventRequest) (*protocol.OOMEvent, error) {
	if s.cfg.OOM == nil {
		<-ctx.Done()
		return nil, toStatus(ctx.Err())
	}
	select {
	case id := <-s.cfg.OOM:
		return &protocol.OOMEvent{ContainerId: id}, nil
	case <-ctx.Done():
		return nil, toStatus(ctx.Err())
	}
}
