// Package channel opens joey-agent's end of the agent channel: a
// virtio-serial port found by name, or a vsock port. Either way the agent
// gets a net.Listener to serve ttRPC on.
package channel

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/mdlayher/vsock"
)

// DefaultSpec is the channel the host's drivers configure by default.
const DefaultSpec = "serial:agent.0"

// Listen opens the channel described by spec: "serial:NAME" (a virtio-serial
// port whose name is NAME) or "vsock:PORT".
func Listen(ctx context.Context, spec string) (net.Listener, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok || arg == "" {
		return nil, fmt.Errorf("agent channel %q: want serial:NAME or vsock:PORT", spec)
	}
	switch kind {
	case "serial":
		return ListenSerial(ctx, "/sys/class/virtio-ports", "/dev", arg)
	case "vsock":
		port, err := strconv.ParseUint(arg, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("agent channel %q: bad vsock port: %w", spec, err)
		}
		l, err := vsock.Listen(uint32(port), nil)
		if err != nil {
			return nil, fmt.Errorf("listen on vsock port %d: %w", port, err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("agent channel %q: unknown kind %q (want serial or vsock)", spec, kind)
}
