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

// Attempt bounds of Connect. The first health check waits for the boot: a
// guest that has not opened its end of the channel yet leaves the request
// in the channel (QEMU's virtio-serial does not read a port the guest has
// not opened; the built-in VMM's ports buffer it), and hanging up to retry
// would only make the guest see the port close and reopen while it boots.
// Past firstAttempt the guest is slow or the stream is wedged (a request
// that reached a port just as the guest closed it is discarded), so later
// attempts start on a fresh stream and are short.
var (
	firstAttempt = 30 * time.Second
	laterAttempt = 2 * time.Second
)

// Connect dials until the agent answers its health check or ctx ends.
func Connect(ctx context.Context, dial Dialer) (*Client, error) {
	var lastErr error
	for checks := 0; ; checks++ {
		if err := ctx.Err(); err != nil {
			if lastErr == nil {
				lastErr = err
			}
			return nil, fmt.Errorf("connect to agent: %w (last error: %v)", ctx.Err(), lastErr)
		}
		conn, err := dial(ctx)
		if err != nil {
			// No stream yet (the VMM is not listening): not a check.
			checks--
			lastErr = err
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		c := NewClient(conn)
		bound := laterAttempt
		if checks == 0 {
			bound = firstAttempt
		}
		cctx, cancel := context.WithTimeout(ctx, bound)
		_, err = c.Check(cctx, &protocol.CheckRequest{})
		cancel()
		if err == nil {
			return c, nil
		}
		c.Close()
		lastErr = err
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
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
