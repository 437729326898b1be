package virtio

import (
	"errors"
	"sync"
)

// Errors of Lifecycle.Activate; devices wrap them with their name.
var (
	ErrClosed = errors.New("device closed")
	ErrActive = errors.New("already active; reset first")
)

// Lifecycle is the Activate, Reset and Close of a device whose queues are
// served by goroutines of its own: Activate starts them, Reset stops them
// and waits for them, Close does the same for good. It serializes the
// three. S is what one activation shares with the rest of the device (its
// Notify and Err), reached through Active. The zero Lifecycle is open and
// inactive.
type Lifecycle[S any] struct {
	mu     sync.Mutex
	closed bool
	run    *run[S] // nil unless active
}

// run is one activation.
type run[S any] struct {
	state S
	stop  chan struct{}
	wg    sync.WaitGroup
}

// Activate fails with ErrClosed once the device is closed, and with
// ErrActive while an activation runs. Otherwise it calls start, which
// checks what the driver set up, builds the activation's state and starts
// its goroutines with spawn (during start only); each goroutine must
// return once stop is closed. If start fails, Activate returns its error
// and the device stays inactive, once any goroutine it spawned has
// stopped.
//
// start runs with the lifecycle locked: it must not call back into it,
// and neither may the goroutines it spawns (Reset waits for them locked).
func (l *Lifecycle[S]) Activate(start func(stop <-chan struct{}, spawn func(func())) (S, error)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return ErrClosed
	case l.run != nil:
		return ErrActive
	}
	r := &run[S]{stop: make(chan struct{})}
	state, err := start(r.stop, r.wg.Go)
	if err != nil {
		r.halt(nil)
		return err
	}
	r.state = state
	l.run = r
	return nil
}

// Active returns the state of the running activation; ok is false when
// there is none.
func (l *Lifecycle[S]) Active() (state S, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.run == nil {
		return state, false
	}
	return l.run.state, true
}

// Reset stops the running activation, if any: it closes stop, calls wake
// (when not nil) to rouse goroutines blocked where stop cannot reach them,
// and returns once every goroutine of the activation has.
func (l *Lifecycle[S]) Reset(wake func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reset(wake)
}

func (l *Lifecycle[S]) reset(wake func()) {
	if l.run == nil {
		return
	}
	l.run.halt(wake)
	l.run = nil
}

func (r *run[S]) halt(wake func()) {
	close(r.stop)
	if wake != nil {
		wake()
	}
	r.wg.Wait()
}

// Close closes the device for good: it stops the running activation as
// Reset(wake) does, then calls release (when not nil) to free what the
// device holds and returns its error. Later calls do nothing and return
// nil.
func (l *Lifecycle[S]) Close(wake func(), release func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.reset(wake)
	if release == nil {
		return nil
	}
	return release()
}

// Stopping reports whether stop, an activation's stop channel, is closed:
// a device goroutine checks it between pieces of work.
func Stopping(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// WakeUp leaves a wake-up on kick, a channel of capacity 1 that a device
// goroutine waits on, unless one is pending already: kicks that arrive
// while the goroutine works are served by its next pass.
func WakeUp(kick chan<- struct{}) {
	select {
	case kick <- struct{}{}:
	default:
	}
}
