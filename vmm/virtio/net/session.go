package net

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"github.com/joeyrt/joey/vmm/virtio"
)

// session is the device between one Activate and the Reset after it: the
// receive goroutine alone uses the receive queue and the transmit
// goroutine alone the transmit queue, so neither queue needs a lock.
type session struct {
	tap      *os.File
	features uint64
	rxq, txq *virtio.Queue
	irq      virtio.Interrupter
	// rxKick and txKick hold at most one pending wake-up each: kicks that
	// arrive while a goroutine works are covered by that work.
	rxKick, txKick chan struct{}
	// stop is closed when the device resets (Device.halt then wakes a
	// goroutine blocked on the TAP).
	stop <-chan struct{}

	// held are receive chains taken from the ring for frames but not
	// used yet, in ring order (receive goroutine only).
	held []virtio.Chain

	mu  sync.Mutex
	err error
}

func newSession(tapFile *os.File, features uint64, rxq, txq *virtio.Queue, irq virtio.Interrupter, stop <-chan struct{}) *session {
	return &session{
		tap:      tapFile,
		features: features,
		rxq:      rxq,
		txq:      txq,
		irq:      irq,
		rxKick:   make(chan struct{}, 1),
		txKick:   make(chan struct{}, 1),
		stop:     stop,
	}
}

// fail records why a goroutine gave up its queue; the first reason wins.
func (s *session) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *session) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// push returns chains to the driver of queue q and signals it if it wants
// that; false means the interrupt could not be raised and the goroutine
// should give up.
func (s *session) push(q int, vq *virtio.Queue, used []virtio.Used) bool {
	if !vq.PushAll(used) {
		return true
	}
	if err := s.irq.Queue(q); err != nil {
		s.fail(fmt.Errorf("virtio-net: signal queue %d: %w", q, err))
		return false
	}
	return true
}

func putU16(b []byte, v uint16) { binary.LittleEndian.PutUint16(b, v) }
