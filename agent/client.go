// Package agent is the host's client of joey-agent, the guest's PID 1. It
// speaks the ttRPC protocol of agent/protocol over whatever byte stream the
// hypervisor gives (virtio-serial socket, vsock, an in-process pipe).
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/joeyrt/joey/agent/protocol"
)

// Client is a connection to one guest's agent. The embedded AgentService
// gives every RPC; the methods below add what callers would otherwise repeat.
type Client struct {
	protocol.AgentService
	conn *ttrpc.Client
}

// NewClient speaks the agent protocol over conn. Client owns conn.
func NewClient(conn net.Conn) *Client {
	c := ttrpc.NewClient(conn)
	return &Client{AgentService: protocol.NewAgentClient(c), conn: c}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Dialer opens a fresh byte stream to the agent channel.
type Dialer func(ctx context.Context) (net.Conn, error)

// Connect dials until the agent answers its health check or ctx ends. A
// guest that is still booting has not opened its end of the channel yet;
// requests sent then wait in the channel, so each attempt is bounded and a
// late answer to an abandoned attempt is harmless.
func Connect(ctx context.Context, dial Dialer) (*Client, error) {
	var lastErr error
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			if lastErr == nil {
				lastErr = err
			}
			return nil, fmt.Errorf("connect to agent: %w (last error: %v)", ctx.Err(), lastErr)
		}
		conn, err := dial(ctx)
		if err != nil {
			lastErr = err
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		c := NewClient(conn)
		// The first attempt may wait for the whole boot; later ones are
		// shorter so a wedged connection is replaced.
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = c.Check(cctx, &protocol.CheckRequest{})
		cancel()
		if err == nil {
			return c, nil
		}
		c.Close()
		lastErr = err
		if errors.Is(err, context.Canceled) {
			continue
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
