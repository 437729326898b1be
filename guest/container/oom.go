package container

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
	var eventsFile string
	if cg := c.lc.Config().Cgroups; cg != nil && cg.Path != "" {
		eventsFile = filepath.Join("/sys/fs/cgroup", cg.Path, "memory.events")
	}
	go func() {
		// Drain until libcontainer closes the channel (its watcher ends
		// when the cgroup empties or goes), so its goroutine never blocks.
		reported := uint64(0)
		send := func() {
			select {
			case m.oom <- c.id:
			case <-c.stopOOM:
			}
		}
		for range events {
			reported++
			send()
		}
		// The watcher stops as soon as the cgroup is empty; when the OOM
		// killer took the last process, its count can land just after.
		if n := oomKills(eventsFile); n > reported {
			send()
		}
	}()
}

// oomKills reads the oom_kill count of a cgroup v2 memory.events file; 0
// when it cannot be read (cgroup v1, or already removed).
func oomKills(path string) uint64 {
	if path == "" {
		return 0
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
