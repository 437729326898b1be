package agent

import (
	"context"
	"fmt"
	"io"

	"github.com/joeyrt/joey/agent/protocol"
)

// Stream names one output stream of a guest process.
type Stream int

const (
	Stdout Stream = iota
	Stderr
)

func (s Stream) String() string {
	if s == Stderr {
		return "stderr"
	}
	return "stdout"
}

// CopyOutput copies one output stream of a guest process to w until the
// stream ends (nil) or ctx ends. Reads are long polls in the agent, so this
// costs one round trip per chunk of output, not per poll interval.
func (c *Client) CopyOutput(ctx context.Context, containerID, execID string, s Stream, w io.Writer) error {
	read := c.ReadStdout
	if s == Stderr {
		read = c.ReadStderr
	}
	req := &protocol.ReadStreamRequest{ContainerId: containerID, ExecId: execID, Len: 32 << 10}
	for {
		resp, err := read(ctx, req)
		if err != nil {
			return fmt.Errorf("read %s of %s/%s: %w", s, containerID, execID, err)
		}
		if len(resp.Data) > 0 {
			if _, err := w.Write(resp.Data); err != nil {
				return fmt.Errorf("copy %s of %s/%s: %w", s, containerID, execID, err)
			}
		}
		if resp.Eof {
			return nil
		}
	}
}

// CopyInput copies r to the stdin of a guest process and closes that stdin
// at r's end, so the process sees EOF as it would under runc.
func (c *Client) CopyInput(ctx context.Context, containerID, execID string, r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := r.Read(buf)
		for off := 0; off < n; {
			resp, err := c.WriteStdin(ctx, &protocol.WriteStreamRequest{ContainerId: containerID, ExecId: execID, Data: buf[off:n]})
			if err != nil {
				return fmt.Errorf("write stdin of %s/%s: %w", containerID, execID, err)
			}
			off += int(resp.Len)
		}
		if rerr == io.EOF {
			_, err := c.CloseStdin(ctx, &protocol.CloseStdinRequest{ContainerId: containerID, ExecId: execID})
			if err != nil {
				return fmt.Errorf("close stdin of %s/%s: %w", containerID, execID, err)
			}
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read input for %s/%s: %w", containerID, execID, rerr)
		}
	}
}
