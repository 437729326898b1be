package server

import (
	"context"
	"io"
	"sync"
)

// maxBuffered bounds what a stream holds for a host that is not reading; past
// it the pump stops reading and the process blocks on its pipe, as it would
// on a slow terminal.
const maxBuffered = 1 << 20

// outputStream buffers one output pipe of a process so that a host read is
// a long poll that can be cancelled by its deadline, and no output is lost
// between the process writing it and the host asking for it.
type outputStream struct {
	mu    sync.Mutex
	buf   []byte        // guarded by mu
	eof   bool          // guarded by mu; the pipe has ended
	ready chan struct{} // guarded by mu; closed and replaced when buf or eof changes
	room  chan struct{} // guarded by mu; closed and replaced when the host drained data
	// drained is closed once a host read has returned the end of the stream.
	drained     chan struct{}
	drainedOnce sync.Once
}

func newOutputStream(r io.Reader) *outputStream {
	s := &outputStream{ready: make(chan struct{}), room: make(chan struct{}), drained: make(chan struct{})}
	go s.pump(r)
	return s
}

func (s *outputStream) pump(r io.Reader) {
	chunk := make([]byte, 32<<10)
	for {
		s.mu.Lock()
		for len(s.buf) >= maxBuffered {
			room := s.room
			s.mu.Unlock()
			<-room
			s.mu.Lock()
		}
		s.mu.Unlock()
		n, err := r.Read(chunk)
		s.mu.Lock()
		s.buf = append(s.buf, chunk[:n]...)
		if err != nil {
			s.eof = true
		}
		close(s.ready)
		s.ready = make(chan struct{})
		s.mu.Unlock()
		if err != nil {
			if c, ok := r.(io.Closer); ok {
				c.Close()
			}
			return
		}
	}
}

// Read returns up to max buffered bytes, waiting for some if there are none.
// eof is true once the pipe has ended and everything was returned.
func (s *outputStream) Read(ctx context.Context, max int) (data []byte, eof bool, err error) {
	for {
		s.mu.Lock()
		if len(s.buf) > 0 || s.eof {
			n := min(len(s.buf), max)
			data = append([]byte(nil), s.buf[:n]...)
			s.buf = s.buf[n:]
			eof = s.eof && len(s.buf) == 0
			if eof {
				s.drainedOnce.Do(func() { close(s.drained) })
			}
			close(s.room)
			s.room = make(chan struct{})
			s.mu.Unlock()
			return data, eof, nil
		}
		ready := s.ready
		s.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}
