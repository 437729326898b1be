package blk

import (
	"fmt"
	"sync"

	"github.com/joeyrt/joey/vmm/virtio"
)

// worker serves the request queue between one Activate and the Reset
// after it. It alone pops and pushes, so the queue needs no lock.
type worker struct {
	dev *Device
	q   *virtio.Queue
	irq virtio.Interrupter
	// writeThrough: the driver did not negotiate FLUSH, so it counts on
	// every completed write being on stable storage (virtio 1.2 §5.2.6.2).
	writeThrough bool
	// kick holds at most one pending wake-up: kicks that arrive while the
	// worker drains the ring are covered by that drain.
	kick chan struct{}
	stop <-chan struct{}

	mu  sync.Mutex
	err error
}

func (w *worker) wake() { virtio.WakeUp(w.kick) }

func (w *worker) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *worker) run() {
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		}
		if err := w.drain(); err != nil {
			// A broken ring or a dead interrupt line: serving on would
			// only guess. Idle until the driver resets the device.
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			<-w.stop
			return
		}
	}
}

// drain serves every available request, checking for a reset between
// requests so Reset waits for at most one.
func (w *worker) drain() error {
	for !virtio.Stopping(w.stop) {
		c, ok, err := w.q.Pop()
		if err != nil {
			return fmt.Errorf("virtio-blk: request queue: %w", err)
		}
		if !ok {
			return nil
		}
		written := w.dev.serve(&c, w.writeThrough)
		if w.q.Push(c.Head, written) {
			if err := w.irq.Queue(0); err != nil {
				return fmt.Errorf("virtio-blk: signal request queue: %w", err)
			}
		}
	}
	return nil
}
