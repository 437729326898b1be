package virtio

import (
	"net"
	"sync"
	"time"
)

// Deadlines are the read and write deadlines of a hand-written host-side
// net.Conn (a virtio-console port, a virtio-vsock connection) whose Read
// and Write block under a device lock until woken. Embedded in the conn it
// provides SetDeadline, SetReadDeadline and SetWriteDeadline; Read and
// Write check ReadExpired or WriteExpired and sleep with WaitRead or
// WaitWrite. Everything but the setters is called with the lock held.
// Make one with NewDeadlines.
type Deadlines struct {
	mu sync.Locker
	// closed is the conn's flag, set by its Close; wake wakes every call
	// blocked on the conn; opError wraps errors as the conn reports them.
	closed      *bool
	wake        func()
	opError     func(op string, err error) error
	read, write time.Time
}

// NewDeadlines returns no deadlines for a conn whose state mu guards.
// Once *closed is set the setters fail with net.ErrClosed, wrapped by
// opError; otherwise they call wake after the change, so blocked calls
// re-arm their timers from the new deadline.
func NewDeadlines(mu sync.Locker, closed *bool, wake func(), opError func(op string, err error) error) Deadlines {
	return Deadlines{mu: mu, closed: closed, wake: wake, opError: opError}
}

// SetDeadline implements net.Conn.
func (d *Deadlines) SetDeadline(t time.Time) error {
	return d.set(func() { d.read, d.write = t, t })
}

// SetReadDeadline implements net.Conn.
func (d *Deadlines) SetReadDeadline(t time.Time) error {
	return d.set(func() { d.read = t })
}

// SetWriteDeadline implements net.Conn.
func (d *Deadlines) SetWriteDeadline(t time.Time) error {
	return d.set(func() { d.write = t })
}

func (d *Deadlines) set(apply func()) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if *d.closed {
		return d.opError("set deadline", net.ErrClosed)
	}
	apply()
	d.wake()
	return nil
}

// ReadExpired reports whether the read deadline has passed; Read then
// fails with os.ErrDeadlineExceeded.
func (d *Deadlines) ReadExpired() bool { return expired(d.read) }

// WriteExpired reports whether the write deadline has passed; Write then
// fails with os.ErrDeadlineExceeded.
func (d *Deadlines) WriteExpired() bool { return expired(d.write) }

func expired(deadline time.Time) bool {
	return !deadline.IsZero() && !time.Now().Before(deadline)
}

// WaitRead is called with the lock held: it calls unlock, which releases
// it (nil: mu.Unlock), sleeps until wake is closed or the read deadline
// passes, and takes the lock again.
func (d *Deadlines) WaitRead(wake <-chan struct{}, unlock func()) { d.wait(wake, d.read, unlock) }

// WaitWrite is WaitRead for the write deadline.
func (d *Deadlines) WaitWrite(wake <-chan struct{}, unlock func()) { d.wait(wake, d.write, unlock) }

func (d *Deadlines) wait(wake <-chan struct{}, deadline time.Time, unlock func()) {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	if unlock == nil {
		unlock = d.mu.Unlock
	}
	unlock()
	select {
	case <-wake:
	case <-timeout:
	}
	d.mu.Lock()
}
