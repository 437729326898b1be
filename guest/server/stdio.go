package server

import (
	"context"
	"fmt"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/guest/container"
)

const defaultReadLen = 32 << 10

func (s *Server) proc(id, execID string) (*procIO, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.streams[procKey{id, execID}]
	if !ok {
		return nil, fmt.Errorf("process %s/%s: %w", id, execID, container.ErrNotFound)
	}
	return p, nil
}

func (s *Server) ReadStdout(ctx context.Context, req *protocol.ReadStreamRequest) (*protocol.ReadStreamResponse, error) {
	return s.read(ctx, req, false)
}

func (s *Server) ReadStderr(ctx context.Context, req *protocol.ReadStreamRequest) (*protocol.ReadStreamResponse, error) {
	return s.read(ctx, req, true)
}

func (s *Server) read(ctx context.Context, req *protocol.ReadStreamRequest, stderr bool) (*protocol.ReadStreamResponse, error) {
	p, err := s.proc(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, toStatus(err)
	}
	st := p.stdout
	if stderr {
		st = p.stderr
		if st == nil {
			// A terminal merges stderr into stdout: there is no stream.
			return &protocol.ReadStreamResponse{Eof: true}, nil
		}
	}
	n := int(req.Len)
	if n <= 0 || n > maxBuffered {
		n = defaultReadLen
	}
	data, eof, err := st.Read(ctx, n)
	if err != nil {
		return nil, toStatus(err)
	}
	return &protocol.ReadStreamResponse{Data: data, Eof: eof}, nil
}

func (s *Server) WriteStdin(ctx context.Context, req *protocol.WriteStreamRequest) (*protocol.WriteStreamResponse, error) {
	p, err := s.proc(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, toStatus(err)
	}
	n, err := p.io.Stdin.Write(req.Data)
	if err != nil {
		return nil, toStatus(fmt.Errorf("write stdin of %s/%s: %w", req.ContainerId, req.ExecId, err))
	}
	return &protocol.WriteStreamResponse{Len: uint32(n)}, nil
}

func (s *Server) CloseStdin(ctx context.Context, req *protocol.CloseStdinRequest) (*protocol.Empty, error) {
	p, err := s.proc(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := p.io.Stdin.Close(); err != nil {
		return nil, toStatus(fmt.Errorf("close stdin of %s/%s: %w", req.ContainerId, req.ExecId, err))
	}
	return &protocol.Empty{}, nil
}

func (s *Server) TtyWinResize(ctx context.Context, req *protocol.TtyWinResizeRequest) (*protocol.Empty, error) {
	if req.Rows > 0xffff || req.Cols > 0xffff {
		return nil, toStatus(invalidf("resize %s/%s: rows and cols must fit in 16 bits", req.ContainerId, req.ExecId))
	}
	if err := s.cfg.Containers.Resize(ctx, req.ContainerId, req.ExecId, uint16(req.Rows), uint16(req.Cols)); err != nil {
		return nil, toStatus(fmt.Errorf("resize %s/%s: %w", req.ContainerId, req.ExecId, err))
	}
	return &protocol.Empty{}, nil
}
