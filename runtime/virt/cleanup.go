package virt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/internal/procutil"
	"github.com/joeyrt/joey/persist"
	"github.com/joeyrt/joey/persist/api"
	"github.com/joeyrt/joey/resource/network"
)

// killWait bounds the wait for a killed VMM to go, so that its open files
// no longer keep the share's mounts busy.
const killWait = 5 * time.Second

// Cleanup implements runtime.Handler: after a shim died, it frees what the
// sandbox's persisted state records (the VMM and its helpers, the TAPs and
// qdiscs in the pod's network namespace, the containers' mounts, the share)
// and removes the state directory. It reads nothing but the state, and can
// be repeated.
func (h *Handler) Cleanup(ctx context.Context, namespace, id string) error {
	cfg := h.cfg
	if cfg == nil {
		var err error
		if cfg, err = config.Load(""); err != nil {
			return fmt.Errorf("cleanup sandbox %s: %w", id, err)
		}
	}
	store, err := persist.NewStore(cfg.Runtime.StateDir)
	if err != nil {
		return fmt.Errorf("cleanup sandbox %s: %w", id, err)
	}
	dir, err := store.Dir(namespace, id)
	if err != nil {
		return fmt.Errorf("cleanup sandbox %s: %w", id, err)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox", id))
	st, err := store.Load(ctx, namespace, id)
	switch {
	case errdefs.IsNotFound(err):
		// No state: nothing was made, or a crash came before the first
		// save. A directory may be left, with nothing mounted in it.
		st = &api.SandboxState{ID: id, Namespace: namespace}
	case err != nil:
		return fmt.Errorf("cleanup sandbox %s: %w", id, err)
	}
	var errs []error
	for _, p := range append([]api.Process{st.VMM.Process}, st.VMM.Helpers...) {
		if err := killRecorded(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	// After the VMM is gone: it held the TAPs' queues.
	if err := network.TeardownFromState(ctx, st.Network.NetNS, st.Network.Endpoints); err != nil {
		errs = append(errs, err)
	}
	if err := unmountRecorded(ctx, st, dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup sandbox %s: %w", id, err)
	}
	if err := store.Delete(ctx, namespace, id); err != nil {
		return fmt.Errorf("cleanup sandbox %s: %w", id, err)
	}
	return nil
}

// killRecorded kills a recorded process, and its process group when it
// leads one (QEMU runs in its own), but only while the pid still names the
// process that was recorded. It waits until the process is gone.
func killRecorded(ctx context.Context, p api.Process) error {
	if !procutil.Matches(p.Pid, p.StartTime) {
		return nil
	}
	log.G(ctx).WithField("pid", p.Pid).WithField("process", p.Name).Info("killing a recorded process")
	target := p.Pid
	if pgid, err := unix.Getpgid(p.Pid); err == nil && pgid == p.Pid {
		target = -p.Pid
	}
	if err := unix.Kill(target, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.Pid, err)
	}
	deadline := time.Now().Add(killWait)
	for procutil.Matches(p.Pid, p.StartTime) && !procutil.Zombie(p.Pid) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s (pid %d) still there after SIGKILL", p.Name, p.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
