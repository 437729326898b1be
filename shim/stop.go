package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/runtime"
	"github.com/joeyrt/joey/shim/bundle"
)

// Stop is the delete command. containerd runs it in the task's bundle after
// every task delete and, what it is for, after a shim died (SIGKILL, OOM
// kill): then nobody stops the VM or frees its TAPs, mounts and state but
// the runtime handler's Cleanup, working from the sandbox's persisted state.
// It reports the task as killed now, which is what containerd tells its
// clients about a task whose shim vanished.
//
// containerd gives the command about 5 s; the handler must kill, not wait.
func (m *Manager) Stop(ctx context.Context, id string) (cshim.StopStatus, error) {
	status := cshim.StopStatus{ExitStatus: 128 + int(unix.SIGKILL), ExitedAt: time.Now()}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return status, fmt.Errorf("delete %s: %w", id, err)
	}
	dir, err := bundleDir(ctx)
	if err != nil {
		return status, fmt.Errorf("delete %s: %w", id, err)
	}
	logger := log.G(ctx).WithField("id", id).WithField("bundle", dir)
	rec, err := bundle.ReadRecord(dir)
	if errors.Is(err, errdefs.ErrNotFound) {
		// The record is written before anything is made for a container.
		logger.Debug("delete: the container was never created, nothing to clean up")
		return status, nil
	}
	if err != nil {
		return status, fmt.Errorf("delete %s: %w", id, err)
	}
	status.Pid = rec.Pid
	logger = logger.WithField("sandbox", rec.SandboxID)
	if rec.ShimPid != os.Getpid() && shimAlive(rec.ShimPid, rec.ShimStartTime) {
		logger.WithField("shim_pid", rec.ShimPid).Debug("delete: the sandbox's shim still runs and owns it")
		return status, nil
	}

	h, err := runtime.Get(m.handler)
	if err != nil {
		return status, fmt.Errorf("delete %s: %w", id, err)
	}
	if rec.ConfigPath != "" {
		// Cleanup takes no configuration; the handler finds its state
		// through config.Load(""), which reads this variable. It must be
		// the file the sandbox was created with (its state_dir).
		if err := os.Setenv(config.EnvPath, rec.ConfigPath); err != nil {
			return status, fmt.Errorf("delete %s: %w", id, err)
		}
	}
	// Debug: containerd runs this after every task delete, and reports
	// anything the command logs as a warning.
	logger.Debug("delete: the sandbox's shim is gone, cleaning up after it")
	if err := h.Cleanup(ctx, ns, rec.SandboxID); err != nil {
		return status, fmt.Errorf("delete %s: clean up sandbox %s: %w", id, rec.SandboxID, err)
	}
	return status, nil
}

// bundleDir is the task's bundle: containerd passes it with -bundle and
// also runs the command in it.
func bundleDir(ctx context.Context) (string, error) {
	if opts, ok := ctx.Value(cshim.OptsKey{}).(cshim.Opts); ok && opts.BundlePath != "" {
		return opts.BundlePath, nil
	}
	return os.Getwd()
}
