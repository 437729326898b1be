package balloon

import (
	"fmt"
	"sync"

	"github.com/joeyrt/joey/vmm/virtio"
)

// queueNames name the queues in errors.
var queueNames = [numQueues]string{"inflate queue", "deflate queue", "reporting queue"}

// worker serves the queues between one Activate and the Reset after it.
// It alone pops and pushes, so the queues need no lock.
type worker struct {
	dev *Device
	// queues are the queues served; nil for one that is not.
	queues [numQueues]*virtio.Queue
	irq    virtio.Interrupter
	// kick holds at most one pending wake-up: kicks that arrive while the
	// worker drains the rings are covered by that drain.
	kick chan struct{}
	stop <-chan struct{}

	mu       sync.Mutex
	err      error
	dropped  uint64
	lastDrop error
}

func (w *worker) wake() { virtio.WakeUp(w.kick) }

func (w *worker) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *worker) drops() (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped, w.lastDrop
}

func (w *worker) drop(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dropped++
	w.lastDrop = err
}

func (w *worker) run() {
	virtio.Serve(w.stop, w.kick, w.drain, func(err error) {
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
	})
}

// drain serves every available chain of every queue, checking for a reset
// between chains so Reset waits for at most one.
func (w *worker) drain() error {
	for qi, q := range w.queues {
		for q != nil && !virtio.Stopping(w.stop) {
			c, ok, err := q.PopRanges()
			if err != nil {
				return fmt.Errorf("virtio-balloon: %s: %w", queueNames[qi], err)
			}
			if !ok {
				break
			}
			if qi == QueueReporting {
				w.report(&c)
			}
			// inflateq and deflateq chains (arrays of le32 page numbers)
			// go back unread. The device never asks for inflation, so a
			// driver that inflates anyway does so on its own account; the
			// pages stay the guest's (without MUST_TELL_HOST it may reuse
			// them before it tells us), so discarding them would be the
			// only way to act, and not acting is always safe. Nothing is
			// written either way: the device writes nothing on any queue.
			if q.Push(c.Head, 0) {
				if err := w.irq.Queue(qi); err != nil {
					return fmt.Errorf("virtio-balloon: signal %s: %w", queueNames[qi], err)
				}
			}
		}
	}
	return nil
}

// report gives back every device-writable range of a report (Linux's
// virtballoon_free_page_report adds the free page ranges as in-buffers). A
// range the Discarder refuses, or a device-readable one, is skipped and
// counted; the rest of the chain is still served.
func (w *worker) report(c *virtio.RangeChain) {
	for _, r := range c.Readable {
		w.drop(fmt.Errorf("virtio-balloon: reporting queue: device-readable buffer [%#x, +%#x) in a report", r.Addr, r.Len))
	}
	for _, r := range c.Writable {
		if err := w.dev.discard.Discard(r.Addr, uint64(r.Len)); err != nil {
			w.drop(fmt.Errorf("virtio-balloon: reporting queue: %w", err))
			continue
		}
		w.dev.reported.Add(uint64(r.Len))
	}
}
