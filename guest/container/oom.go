package container

import (
	"context"

	"github.com/containerd/log"
)

// watchOOM forwards c's OOM notifications to the manager's channel until c
// is removed. Without a memory controller there are none to watch: that is
// logged, not fatal, since the container runs fine without the events.
func (m *Manager) watchOOM(ctx context.Context, c *ctr) {
	events, err := c.lc.NotifyOOM()
	if err != nil {
		log.G(ctx).WithError(err).WithField("container", c.id).Warn("no OOM events for this container")
		return
	}
	go func() {
		// Drain until libcontainer closes the channel (its watcher ends
		// when the cgroup empties or goes), so its goroutine never blocks.
		for range events {
			select {
			case m.oom <- c.id:
			case <-c.stopOOM:
			}
		}
	}()
}
