package qmp

import (
	"context"
	"slices"
	"sync"
)

// Subscription receives the events it was made for, in order, from the
// moment Subscribe returned. It queues without bound, so a slow reader never
// holds up the connection (which would stall every command).
type Subscription struct {
	c      *Client
	names  []string      // empty: every event
	signal chan struct{} // capacity 1: "the queue changed"

	mu    sync.Mutex
	queue []Event // guarded by mu
	err   error   // guarded by mu; set once the subscription has ended
}

// Subscribe starts queueing the named events (all events when no name is
// given). Subscribe before issuing the command whose events you await.
func (c *Client) Subscribe(names ...string) *Subscription {
	s := &Subscription{c: c, names: names, signal: make(chan struct{}, 1)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs == nil {
		s.err = ErrClosed
		return s
	}
	c.subs[s] = struct{}{}
	return s
}

// Next returns the next event, waiting for it until ctx ends. Once the
// connection is gone and the queue is empty it returns ErrClosed.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			e := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return e, nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return Event{}, err
		}
		select {
		case <-s.signal:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// Close stops the subscription; queued events are dropped.
func (s *Subscription) Close() {
	s.c.mu.Lock()
	delete(s.c.subs, s)
	s.c.mu.Unlock()
	s.end(ErrClosed)
	s.mu.Lock()
	s.queue = nil
	s.mu.Unlock()
}

func (s *Subscription) wants(name string) bool {
	return len(s.names) == 0 || slices.Contains(s.names, name)
}

func (s *Subscription) push(e Event) {
	s.mu.Lock()
	if s.err == nil {
		s.queue = append(s.queue, e)
	}
	s.mu.Unlock()
	s.wake()
}

func (s *Subscription) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.wake()
}

func (s *Subscription) wake() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// publish hands e to every subscription that wants it.
func (c *Client) publish(e Event) {
	c.mu.Lock()
	var to []*Subscription
	for s := range c.subs {
		if s.wants(e.Name) {
			to = append(to, s)
		}
	}
	c.mu.Unlock()
	for _, s := range to {
		s.push(e)
	}
}
