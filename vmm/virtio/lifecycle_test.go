package virtio_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/joeyrt/joey/vmm/virtio"
)

// lingering is how long a stopping goroutine takes to return: long enough
// that a Reset or Close that did not wait for it would return first.
const lingering = 50 * time.Millisecond

// starter is an activation whose one goroutine returns lingering after
// stop is closed and then sets exited.
func starter(state int, exited *atomic.Bool) func(<-chan struct{}, func(func())) (int, error) {
	return func(stop <-chan struct{}, spawn func(func())) (int, error) {
		spawn(func() {
			<-stop
			time.Sleep(lingering)
			exited.Store(true)
		})
		return state, nil
	}
}

func TestLifecycleActivateFailsWhileActiveOrOnceClosed(t *testing.T) {
	errStart := errors.New("the queue is not enabled")
	type step func(*testing.T, *virtio.Lifecycle[int])
	activate := func(t *testing.T, l *virtio.Lifecycle[int]) {
		if err := l.Activate(starter(1, new(atomic.Bool))); err != nil {
			t.Fatal(err)
		}
	}
	reset := func(_ *testing.T, l *virtio.Lifecycle[int]) { l.Reset(nil) }
	closeIt := func(t *testing.T, l *virtio.Lifecycle[int]) {
		if err := l.Close(nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		before   []step
		startErr error
		want     error
		// started: start was called; active: Active reports a state after.
		started, active bool
	}{
		{"a new lifecycle activates", nil, nil, nil, true, true},
		{"a second Activate without Reset fails", []step{activate}, nil, virtio.ErrActive, false, true},
		{"Activate after Reset succeeds", []step{activate, reset}, nil, nil, true, true},
		{"Reset of an inactive lifecycle is harmless", []step{reset}, nil, nil, true, true},
		{"Activate after Close fails", []step{closeIt}, nil, virtio.ErrClosed, false, false},
		{"Activate after an active lifecycle is closed fails", []step{activate, closeIt}, nil, virtio.ErrClosed, false, false},
		{"start's error is returned and leaves it inactive", nil, errStart, errStart, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l virtio.Lifecycle[int]
			defer l.Reset(nil)
			for _, f := range tt.before {
				f(t, &l)
			}
			started := false
			err := l.Activate(func(stop <-chan struct{}, spawn func(func())) (int, error) {
				started = true
				return 2, tt.startErr
			})
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("Activate = %v, want %v", err, tt.want)
			}
			if started != tt.started {
				t.Fatalf("start called: %v, want %v", started, tt.started)
			}
			state, ok := l.Active()
			if ok != tt.active {
				t.Fatalf("Active ok = %v, want %v", ok, tt.active)
			}
			if ok && tt.started && state != 2 {
				t.Fatalf("Active = %d, want the state start returned", state)
			}
		})
	}
}

func TestLifecycleResetAndCloseStopAndWaitForEveryGoroutine(t *testing.T) {
	tests := []struct {
		name string
		stop func(l *virtio.Lifecycle[int], wake func())
	}{
		{"Reset", func(l *virtio.Lifecycle[int], wake func()) { l.Reset(wake) }},
		{"Close", func(l *virtio.Lifecycle[int], wake func()) {
			if err := l.Close(wake, nil); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l virtio.Lifecycle[int]
			var worker, blocked atomic.Bool
			// unblock stands for a TAP read that only wake interrupts.
			unblock := make(chan struct{})
			start := starter(1, &worker)
			if err := l.Activate(func(stop <-chan struct{}, spawn func(func())) (int, error) {
				spawn(func() {
					<-unblock
					time.Sleep(lingering)
					blocked.Store(true)
				})
				return start(stop, spawn)
			}); err != nil {
				t.Fatal(err)
			}
			woken := 0
			tt.stop(&l, func() {
				woken++
				close(unblock)
			})
			if woken != 1 {
				t.Fatalf("wake called %d times, want once", woken)
			}
			if !worker.Load() || !blocked.Load() {
				t.Fatalf("%s returned before its goroutines: worker done %v, blocked one done %v", tt.name, worker.Load(), blocked.Load())
			}
			if _, ok := l.Active(); ok {
				t.Fatalf("still active after %s", tt.name)
			}
			// Nothing is left to stop: a second call does not wake anything.
			tt.stop(&l, func() { t.Fatalf("wake called again by a second %s", tt.name) })
		})
	}
}

func TestLifecycleFailedStartStopsWhatItSpawned(t *testing.T) {
	var l virtio.Lifecycle[int]
	var exited atomic.Bool
	start := starter(1, &exited)
	errStart := errors.New("bad queue")
	err := l.Activate(func(stop <-chan struct{}, spawn func(func())) (int, error) {
		start(stop, spawn)
		return 0, errStart
	})
	if !errors.Is(err, errStart) {
		t.Fatalf("Activate = %v, want %v", err, errStart)
	}
	if !exited.Load() {
		t.Fatal("Activate returned before the goroutine its failed start spawned")
	}
	if err := l.Activate(starter(1, new(atomic.Bool))); err != nil {
		t.Fatalf("Activate after a failed one: %v", err)
	}
	l.Reset(nil)
}

func TestLifecycleCloseReleasesOnceAndReturnsItsError(t *testing.T) {
	errRelease := errors.New("close file")
	tests := []struct {
		name     string
		active   bool
		release  error
		wantWake int
	}{
		{"inactive", false, nil, 0},
		{"active", true, nil, 1},
		{"release fails", true, errRelease, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l virtio.Lifecycle[int]
			var exited atomic.Bool
			if tt.active {
				if err := l.Activate(starter(1, &exited)); err != nil {
					t.Fatal(err)
				}
			}
			woken, released := 0, 0
			wake := func() { woken++ }
			release := func() error {
				released++
				if tt.active && !exited.Load() {
					t.Error("release ran before the goroutines were gone")
				}
				return tt.release
			}
			if err := l.Close(wake, release); !errors.Is(err, tt.release) || (err == nil) != (tt.release == nil) {
				t.Fatalf("Close = %v, want %v", err, tt.release)
			}
			if err := l.Close(wake, release); err != nil {
				t.Fatalf("second Close = %v, want nil", err)
			}
			if woken != tt.wantWake || released != 1 {
				t.Fatalf("wake called %d times, release %d; want %d and 1", woken, released, tt.wantWake)
			}
		})
	}
}
