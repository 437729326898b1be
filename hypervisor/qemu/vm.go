package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/mdlayher/vsock"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/hypervisor/qemu/qmp"
)

// dialRetry is how long AgentConn and DebugConsole keep retrying a socket
// that is missing or refuses connections.
const dialRetry = 2 * time.Second

// vm is a running QEMU.
type vm struct {
	id           string
	stateDir     string
	agent        hypervisor.AgentChannel
	debugConsole bool
	proc         *process
	qmp          *qmp.Client
	grace        time.Duration

	stopMu  sync.Mutex
	stopped bool  // guarded by stopMu
	stopErr error // guarded by stopMu; the first Stop's result
}

var (
	_ hypervisor.VM            = (*vm)(nil)
	_ hypervisor.Pauser        = (*vm)(nil)
	_ hypervisor.DebugConsoler = (*vm)(nil)
)

// Pid implements hypervisor.VM. QEMU leads its own process group, so the
// pid is also the group to signal.
func (v *vm) Pid() int { return v.proc.pid() }

// Wait implements hypervisor.VM.
func (v *vm) Wait() <-chan struct{} { return v.proc.exited }

// ExitErr implements hypervisor.VM. After Stop had to kill QEMU, it reports
// the signal.
func (v *vm) ExitErr() error {
	if !v.proc.hasExited() {
		return nil
	}
	return v.proc.exitErr()
}

// AgentConn implements hypervisor.VM.
func (v *vm) AgentConn(ctx context.Context) (net.Conn, error) {
	if v.agent.IsVsock() {
		c, err := v.dialRetrying(ctx, func(ctx context.Context) (net.Conn, error) {
			return vsock.DialContext(ctx, v.agent.GuestCID, v.agent.Port, nil)
		})
		if err != nil {
			return nil, fmt.Errorf("vm %s: agent vsock %d:%d: %w", v.id, v.agent.GuestCID, v.agent.Port, err)
		}
		return c, nil
	}
	return v.dialUnix(ctx, "agent", v.path(agentSocketName))
}

// DebugConsole implements hypervisor.DebugConsoler.
func (v *vm) DebugConsole(ctx context.Context) (net.Conn, error) {
	if !v.debugConsole {
		return nil, fmt.Errorf("vm %s: no debug console: start the VM with DebugConsole set", v.id)
	}
	return v.dialUnix(ctx, "debug console", v.path(consoleSocketName))
}

func (v *vm) path(name string) string { return plan{stateDir: v.stateDir}.path(name) }

func (v *vm) dialUnix(ctx context.Context, what, path string) (net.Conn, error) {
	var d net.Dialer
	c, err := v.dialRetrying(ctx, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "unix", path)
	})
	if err != nil {
		return nil, fmt.Errorf("vm %s: %s socket: %w", v.id, what, err)
	}
	return c, nil
}

// dialRetrying retries dial for a short while on errors that mean "not
// there yet", unless QEMU has exited.
func (v *vm) dialRetrying(ctx context.Context, dial func(context.Context) (net.Conn, error)) (net.Conn, error) {
	deadline := time.Now().Add(dialRetry)
	for {
		c, err := dial(ctx)
		if err == nil {
			return c, nil
		}
		transient := errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
		if !transient || time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-v.proc.exited:
			return nil, fmt.Errorf("qemu has exited: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Pause implements hypervisor.Pauser.
func (v *vm) Pause(ctx context.Context) error {
	if err := v.qmp.Stop(ctx); err != nil {
		return fmt.Errorf("pause vm %s: %w", v.id, err)
	}
	return nil
}

// Resume implements hypervisor.Pauser.
func (v *vm) Resume(ctx context.Context) error {
	if err := v.qmp.Cont(ctx); err != nil {
		return fmt.Errorf("resume vm %s: %w", v.id, err)
	}
	return nil
}

// Stop implements hypervisor.VM: QMP quit, SIGKILL to the process group if
// QEMU has not exited when the grace period or ctx ends, then the state
// directory goes. Under TCG a guest may not even see an ACPI request in
// time, so there is no system_powerdown step: asking the guest is the
// agent's job, before Stop.
func (v *vm) Stop(ctx context.Context) error {
	v.stopMu.Lock()
	defer v.stopMu.Unlock()
	if v.stopped {
		return v.stopErr
	}
	if !v.proc.hasExited() {
		qctx, cancel := context.WithTimeout(ctx, v.grace)
		err := v.qmp.Quit(qctx)
		if err == nil {
			select {
			case <-v.proc.exited:
			case <-qctx.Done():
				err = qctx.Err()
			}
		}
		cancel()
		if !v.proc.hasExited() {
			log.G(ctx).WithError(err).WithField("vm", v.id).Warn("qemu: did not exit on quit; killing")
		}
		// SIGKILL to the group if QEMU is still there (a no-op once it has
		// been reaped: its pid may be someone else's by then).
		if err := v.proc.killAndWait(5 * time.Second); err != nil {
			// Not stopped: a later Stop tries again.
			return fmt.Errorf("stop vm %s: %w", v.id, err)
		}
	}
	var errs []error
	if err := v.qmp.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close qmp: %w", err))
	}
	if err := os.RemoveAll(v.stateDir); err != nil {
		errs = append(errs, fmt.Errorf("remove state dir: %w", err))
	}
	v.stopped = true
	if err := errors.Join(errs...); err != nil {
		v.stopErr = fmt.Errorf("stop vm %s: %w", v.id, err)
	}
	return v.stopErr
}
