package virt

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/joeyrt/joey/persist"
	"github.com/joeyrt/joey/persist/api"
)

// stateKeeper holds a sandbox's persisted state and writes it after every
// change, so that the file always says what the host holds.
type stateKeeper struct {
	store *persist.Store

	mu      sync.Mutex
	st      *api.SandboxState // guarded by mu
	deleted bool              // guarded by mu; the state is gone for good
}

// update applies change and saves the result. The save is not cancelled
// with ctx: state that says less than the host holds is what would make a
// cleanup miss something.
func (k *stateKeeper) update(ctx context.Context, change func(st *api.SandboxState)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	change(k.st)
	if k.deleted {
		// A late update (an exit reported while the sandbox was being
		// removed) must not bring the directory back.
		return nil
	}
	if err := k.store.Save(context.WithoutCancel(ctx), k.st); err != nil {
		return fmt.Errorf("persist sandbox state: %w", err)
	}
	return nil
}

// updateContainer applies change to container id's record (which it
// creates if missing) and saves.
func (k *stateKeeper) updateContainer(ctx context.Context, id string, change func(c *api.ContainerState)) error {
	return k.update(ctx, func(st *api.SandboxState) {
		if st.Containers == nil {
			st.Containers = map[string]api.ContainerState{}
		}
		c := st.Containers[id]
		c.ID = id
		change(&c)
		st.Containers[id] = c
	})
}

// delete removes the state and its directory; later updates are no-ops.
func (k *stateKeeper) delete(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.store.Delete(ctx, k.st.Namespace, k.st.ID); err != nil {
		return err
	}
	k.deleted = true
	return nil
}

// snapshot returns a copy of the state for reading.
func (k *stateKeeper) snapshot() api.SandboxState {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := *k.st
	st.Containers = maps.Clone(st.Containers)
	st.Mounts = slices.Clone(st.Mounts)
	return st
}

// recordSandboxMount is a hostmount.Recorder for the sandbox's own mounts.
func (k *stateKeeper) recordSandboxMount(ctx context.Context, target string) error {
	return k.update(ctx, func(st *api.SandboxState) { st.Mounts = append(st.Mounts, target) })
}

// containerMountRecorder is a hostmount.Recorder for a container's volumes.
func (k *stateKeeper) containerMountRecorder(id string) func(context.Context, string) error {
	return func(ctx context.Context, target string) error {
		return k.updateContainer(ctx, id, func(c *api.ContainerState) { c.Mounts = append(c.Mounts, target) })
	}
}

// rootfsRecorder is a hostmount.Recorder for a container's rootfs.
func (k *stateKeeper) rootfsRecorder(id string) func(context.Context, string) error {
	return func(ctx context.Context, target string) error {
		return k.updateContainer(ctx, id, func(c *api.ContainerState) { c.Rootfs = target })
	}
}
