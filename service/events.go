package service

import (
	"context"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"
	ctrdruntime "github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/log"
)

// eventQueue publishes events one at a time in the order they were pushed,
// so containerd sees a task's create before its start before its exit. It
// never blocks the pusher: a sandbox's event callback must not wait on
// containerd.
type eventQueue struct {
	mu     sync.Mutex
	items  []queuedEvent // guarded by mu
	closed bool          // guarded by mu
	wake   chan struct{} // has room for one wake-up
	// drained is closed when run returns: the queue was closed and
	// everything pushed before was published.
	drained chan struct{}
}

type queuedEvent struct {
	event     events.Event
	published chan struct{}
}

func newEventQueue() *eventQueue {
	return &eventQueue{wake: make(chan struct{}, 1), drained: make(chan struct{})}
}

// push queues ev and returns a channel closed once it has been handed to
// the publisher (or dropped because the shim is shutting down).
func (q *eventQueue) push(ev events.Event) <-chan struct{} {
	done := make(chan struct{})
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		close(done)
		return done
	}
	q.items = append(q.items, queuedEvent{event: ev, published: done})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return done
}

// close makes run return once the queue is empty. Later pushes are dropped.
func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run publishes queued events until the queue is closed and empty.
func (q *eventQueue) run(ctx context.Context, pub events.Publisher) {
	defer close(q.drained)
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			closed := q.closed
			q.mu.Unlock()
			if closed {
				return
			}
			<-q.wake
			continue
		}
		item := q.items[0]
		q.items = q.items[1:]
		q.mu.Unlock()

		topic := ctrdruntime.GetTopic(item.event)
		// containerd's publisher retries a failed event in the background;
		// the error here is only worth a log line.
		if err := pub.Publish(ctx, topic, item.event); err != nil {
			log.G(ctx).WithError(err).WithField("topic", topic).Error("publish event")
		}
		close(item.published)
	}
}

// The events a task sends. Pids are the task pid containerd was given.

func exitEvent(containerID, execID string, pid uint32, code uint32, at time.Time) *eventstypes.TaskExit {
	id := execID
	if id == "" {
		id = containerID
	}
	return &eventstypes.TaskExit{
		ContainerID: containerID,
		ID:          id,
		Pid:         pid,
		ExitStatus:  code,
		ExitedAt:    protobuf.ToTimestamp(at),
	}
}

func oomEvent(containerID string) *eventstypes.TaskOOM {
	return &eventstypes.TaskOOM{ContainerID: containerID}
}
