package virtio_test

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/joeyrt/joey/vmm/virtio"
)

// fakeConn is the state a host conn keeps around its Deadlines.
type fakeConn struct {
	mu     sync.Mutex
	closed bool
	wake   chan struct{}
	dl     virtio.Deadlines
}

func newFakeConn() *fakeConn {
	c := &fakeConn{wake: make(chan struct{})}
	c.dl = virtio.NewDeadlines(&c.mu, &c.closed, c.broadcast, func(op string, err error) error {
		return &net.OpError{Op: op, Err: err}
	})
	return c
}

func (c *fakeConn) broadcast() {
	close(c.wake)
	c.wake = make(chan struct{})
}

func TestDeadlinesExpireWakeAndFailOnceClosed(t *testing.T) {
	c := newFakeConn()
	c.mu.Lock()
	if c.dl.ReadExpired() || c.dl.WriteExpired() {
		t.Fatal("expired without deadlines")
	}
	c.mu.Unlock()

	if err := c.dl.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	if !c.dl.ReadExpired() || c.dl.WriteExpired() {
		t.Fatalf("read expired %v, write expired %v; want only read", c.dl.ReadExpired(), c.dl.WriteExpired())
	}
	c.mu.Unlock()

	// A deadline that passes ends a wait; the lock is held again after.
	if err := c.dl.SetDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	start := time.Now()
	c.dl.WaitWrite(c.wake, nil)
	if time.Since(start) < 10*time.Millisecond || !c.dl.WriteExpired() {
		t.Fatalf("wait ended after %v, write expired %v", time.Since(start), c.dl.WriteExpired())
	}
	c.mu.Unlock()

	// Clearing a deadline wakes a blocked wait, which calls unlock.
	if err := c.dl.SetDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	start = time.Now()
	unlocked := false
	done := make(chan struct{})
	go func() {
		time.Sleep(10 * time.Millisecond)
		c.dl.SetReadDeadline(time.Time{})
		close(done)
	}()
	c.dl.WaitRead(c.wake, func() { unlocked = true; c.mu.Unlock() })
	if !unlocked || c.dl.ReadExpired() || time.Since(start) > time.Minute {
		t.Fatalf("unlock called %v, read expired %v", unlocked, c.dl.ReadExpired())
	}
	c.mu.Unlock()
	<-done

	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	for name, set := range map[string]func(time.Time) error{
		"SetDeadline": c.dl.SetDeadline, "SetReadDeadline": c.dl.SetReadDeadline, "SetWriteDeadline": c.dl.SetWriteDeadline,
	} {
		if err := set(time.Now()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close = %v, want net.ErrClosed", name, err)
		}
	}
}

func TestStoppingAndWakeUp(t *testing.T) {
	stop := make(chan struct{})
	if virtio.Stopping(stop) {
		t.Fatal("stopping before stop is closed")
	}
	close(stop)
	if !virtio.Stopping(stop) {
		t.Fatal("not stopping once stop is closed")
	}
	kick := make(chan struct{}, 1)
	virtio.WakeUp(kick)
	virtio.WakeUp(kick) // one pending already: does not block
	if len(kick) != 1 {
		t.Fatalf("%d wake-ups pending, want 1", len(kick))
	}
}
