package shim

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/log"

	"github.com/joeyrt/joey/shim/bundle"
)

// Start returns the address of the shim that serves the container's
// sandbox. The address is derived from the sandbox id, so every container
// of a pod gets the same one: when a live shim already listens there, the
// container joins it; otherwise Start starts a new shim process on a new
// socket. containerd runs Start in the container's bundle directory.
func (m *Manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	id := params.GetInstanceID()
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", id, err)
	}
	spec, err := bundle.ReadSpec(".")
	if err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", id, err)
	}
	sandboxID := bundle.SandboxID(id, spec.Annotations)
	socketDir := params.GetSocketDir()
	if socketDir == "" {
		socketDir = filepath.Join(defaults.DefaultStateDir, "s")
	}
	address, err := cshim.CreateSocketAddress(ctx, socketDir, params.GetContainerdGrpcAddress(), sandboxID, false)
	if err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", id, err)
	}
	result := &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc", Address: address}
	logger := log.G(ctx).WithField("id", id).WithField("sandbox", sandboxID)

	l, err := listen(address)
	if err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", id, err)
	}
	if l == nil {
		logger.Debug("joining the sandbox's running shim")
		return result, nil
	}
	defer func() {
		// The socket file stays for the shim process, unless it failed.
		l.SetUnlinkOnClose(retErr != nil)
		l.Close()
	}()
	sock, err := l.File()
	if err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", id, err)
	}
	defer sock.Close()

	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", id, err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", id, err)
	}
	args := []string{"-namespace", ns, "-id", id, "-address", params.GetContainerdGrpcAddress()}
	if params.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	// The shim library serves the listener it finds on fd 3.
	cmd.ExtraFiles = []*os.File{sock}
	// Its own process group: signals meant for containerd's group (a ^C
	// in a terminal running containerd) must not stop pods.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", id, err)
	}
	defer func() {
		if retErr != nil {
			cmd.Process.Kill()
		}
	}()
	// Reap it should it die before this command exits.
	go cmd.Wait()
	if err := cshim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", id, err)
	}
	logger.WithField("pid", cmd.Process.Pid).Debug("started shim")
	return result, nil
}

// listen creates the shim socket at address. It returns a nil listener when
// a live shim already serves the address; a socket file left by a shim that
// died is replaced.
func listen(address string) (*net.UnixListener, error) {
	l, err := cshim.NewSocket(address)
	if err == nil {
		return l, nil
	}
	if !cshim.SocketEaddrinuse(err) {
		return nil, fmt.Errorf("create shim socket: %w", err)
	}
	if cshim.CanConnect(address) {
		return nil, nil
	}
	if err := cshim.RemoveSocket(address); err != nil {
		return nil, fmt.Errorf("remove the socket of a dead shim: %w", err)
	}
	if l, err = cshim.NewSocket(address); err != nil {
		return nil, fmt.Errorf("create shim socket: %w", err)
	}
	return l, nil
}
