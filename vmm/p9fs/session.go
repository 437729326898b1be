package p9fs

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
)

// ErrShortMessage is returned by Submit for a message too short to carry a
// tag, which therefore cannot be answered.
var ErrShortMessage = errors.New("9P message shorter than its header")

// teardownGrace is how long a closing session waits, once idle, before it
// ends the library's connection. The library (v0.3.0) starts a handler
// goroutine that registers with its connection's WaitGroup only once it
// runs; if the connection ends first, its teardown Waits concurrently
// with that registration, which the race detector reports and which can
// panic (fixed upstream after v0.3.0). Ending only an idle connection, and
// only after every goroutine it started has had ample time to run, closes
// that window in practice; see Close.
const teardownGrace = 20 * time.Millisecond

// Session is one 9P conversation (one Tversion, its fids and tags) with a
// message-at-a-time interface, for transports that already frame messages
// (virtio-9p: one T-message per descriptor chain). Requests run
// concurrently and are answered in completion order, matched by tag.
//
// The library only speaks over a byte stream, so a Session feeds it T
// messages through an in-memory reader and reassembles its replies from
// an in-memory writer. On the way it checks every message (so each one the
// library sees is answered exactly once, under its own tag), refuses a
// tag already in flight, answers itself what the library would answer
// wrongly (xattrs, getlock, unknown types, messages over msize), carries
// mode bits the library drops, and records each Tattach's uid for the
// files of that fid.
type Session struct {
	srv *Server
	// reply receives each whole R-message; it may be called from several
	// goroutines at once and must not keep frame.
	reply func(frame []byte)
	// onClose runs once when the session starts closing (Serve closes its
	// stream there to unblock its reader).
	onClose func()

	// in hands T-messages to the library's receiving goroutine.
	in chan []byte
	// done is closed when the session starts closing; eof once it is
	// idle, which ends the library's connection.
	done, eof chan struct{}
	closeOnce sync.Once
	// served is closed once the library's connection has ended and every
	// file of the session is closed.
	served chan struct{}

	// msize is the negotiated message size, 0 before Tversion.
	msize atomic.Uint32

	// tagMu guards tags (the tags the library has not answered yet),
	// closing and ended; idle is signalled when tags empties or the
	// library's connection has ended.
	tagMu   sync.Mutex
	idle    *sync.Cond
	tags    map[uint16]struct{}
	closing bool
	ended   bool

	// files are the session's open files, closed at the end whatever the
	// library's teardown managed.
	files fileSet

	// cur is the rest of the T-message the library is reading; the
	// library serialises its receives under a mutex.
	cur []byte

	// wmu guards wbuf, the R-message the library is writing in pieces.
	wmu  sync.Mutex
	wbuf []byte

	// attachMu lets one Tattach at a time through, so the file the
	// library's Attach returns can be given that Tattach's uid.
	attachMu sync.Mutex
	// pmu guards pending.
	pmu     sync.Mutex
	pending *pendingAttach
}

// pendingAttach is the Tattach in flight.
type pendingAttach struct {
	uid  p9.UID
	tag  uint16
	once sync.Once
	// settled is closed once the library took the uid or answered.
	settled chan struct{}
}

func (p *pendingAttach) settle() { p.once.Do(func() { close(p.settled) }) }

// NewSession starts a session whose replies go to reply. reply may be
// called concurrently from several goroutines, must not keep the slice,
// and may still be called by a Submit that races with Close.
func (s *Server) NewSession(reply func(frame []byte)) (*Session, error) {
	return s.newSession(reply, nil)
}

func (s *Server) newSession(reply func([]byte), onClose func()) (*Session, error) {
	sess := &Session{
		srv:     s,
		reply:   reply,
		onClose: onClose,
		in:      make(chan []byte),
		done:    make(chan struct{}),
		eof:     make(chan struct{}),
		served:  make(chan struct{}),
		tags:    map[uint16]struct{}{},
		files:   fileSet{m: map[*file]struct{}{}},
	}
	sess.idle = sync.NewCond(&sess.tagMu)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("new 9P session: %w", ErrClosed)
	}
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()

	// A library server per session: its Attacher is this session's, and
	// its path tree only tracks this session's fids.
	lib := p9.NewServer(attacher{sess})
	go func() {
		defer close(sess.served)
		defer sess.files.closeAll()
		defer sess.end()
		defer func() {
			// Only the library's teardown can panic here (see
			// teardownGrace); its handlers recover their own. The
			// files it then failed to release are closed above.
			_ = recover()
		}()
		lib.Handle(sessionReader{sess}, sessionWriter{sess})
	}()
	return sess, nil
}

// Submit hands one whole T-message to the session, which keeps it. It
// returns once the library has taken the message, not when it is answered.
// A message that is malformed but has a tag is answered with Rlerror.
func (s *Session) Submit(frame []byte) error {
	if len(frame) < headerLen {
		return fmt.Errorf("submit 9P message of %d bytes: %w", len(frame), ErrShortMessage)
	}
	tag, typ := frameTag(frame), frame[4]
	if size := le32(frame); size != uint32(len(frame)) {
		s.reply(rlerror(tag, linux.EINVAL))
		return nil
	}
	if uint32(len(frame)) > s.limit() {
		// The library would drop the whole connection for this.
		s.reply(rlerror(tag, linux.EMSGSIZE))
		return nil
	}
	switch typ {
	case msgTxattrwalk, msgTgetlock:
		s.reply(rlerror(tag, linux.EOPNOTSUPP))
		return nil
	case msgTxattrcreate:
		errno := linux.EOPNOTSUPP
		if s.srv.opts.ReadOnly {
			errno = linux.EROFS
		}
		s.reply(rlerror(tag, errno))
		return nil
	}
	layout, ok := layouts[typ]
	if !ok {
		s.reply(rlerror(tag, linux.EOPNOTSUPP))
		return nil
	}
	if !wellFormed(layout, frame[headerLen:]) {
		s.reply(rlerror(tag, linux.EINVAL))
		return nil
	}
	if errno := s.track(tag, typ); errno != 0 {
		if errno == linux.ESHUTDOWN {
			return fmt.Errorf("submit 9P message: %w", ErrClosed)
		}
		s.reply(rlerror(tag, errno))
		return nil
	}
	switch typ {
	case msgTsetattr:
		carryModeBits(frame)
	case msgTattach:
		return s.attach(frame, tag)
	}
	return s.forward(frame, tag)
}

// track records tag as in flight. A tag already in flight is refused
// (the library would silently drop the message), and so is a Tversion
// while requests are in flight: the library resets per-connection state
// for it without any locking.
func (s *Session) track(tag uint16, typ uint8) linux.Errno {
	s.tagMu.Lock()
	defer s.tagMu.Unlock()
	switch _, busy := s.tags[tag]; {
	case s.closing || s.ended:
		return linux.ESHUTDOWN
	case busy:
		return linux.EINVAL
	case typ == msgTversion && len(s.tags) > 0:
		return linux.EBUSY
	}
	s.tags[tag] = struct{}{}
	return 0
}

func (s *Session) untrack(tag uint16) {
	s.tagMu.Lock()
	defer s.tagMu.Unlock()
	delete(s.tags, tag)
	if len(s.tags) == 0 {
		s.idle.Broadcast()
	}
}

// limit is the largest T-message the library accepts now.
func (s *Session) limit() uint32 {
	if m := s.msize.Load(); m != 0 && m < maxMessage {
		return m
	}
	return maxMessage
}

func (s *Session) forward(frame []byte, tag uint16) error {
	select {
	case s.in <- frame:
		return nil
	case <-s.done:
	case <-s.served:
	}
	s.untrack(tag)
	return fmt.Errorf("submit 9P message: %w", ErrClosed)
}

// end records that the library's connection is over, which only Close
// should cause; nothing in flight will be answered any more.
func (s *Session) end() {
	s.tagMu.Lock()
	defer s.tagMu.Unlock()
	s.ended = true
	s.idle.Broadcast()
}

// attach forwards a Tattach and waits until the library has either taken
// its uid (in Attach) or answered it, so no other Tattach can take it.
func (s *Session) attach(frame []byte, tag uint16) error {
	uid, _ := attachUID(frame) // well-formed: checked by Submit
	s.attachMu.Lock()
	defer s.attachMu.Unlock()
	p := &pendingAttach{uid: p9.UID(uid), tag: tag, settled: make(chan struct{})}
	s.pmu.Lock()
	s.pending = p
	s.pmu.Unlock()
	defer func() {
		s.pmu.Lock()
		s.pending = nil
		s.pmu.Unlock()
	}()
	if err := s.forward(frame, tag); err != nil {
		return err
	}
	select {
	case <-p.settled:
	case <-s.done:
	}
	return nil
}

// takeAttachUID gives the library's Attach the uid of the Tattach in
// flight (NoUID when there is none: nothing is chowned then).
func (s *Session) takeAttachUID() p9.UID {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.pending == nil {
		return p9.NoUID
	}
	s.pending.settle()
	return s.pending.uid
}

// deliver passes one R-message from the library on.
func (s *Session) deliver(frame []byte) {
	tag := frameTag(frame)
	if frame[4] == msgRversion && len(frame) >= headerLen+4 {
		s.msize.Store(le32(frame[headerLen:]))
	}
	s.pmu.Lock()
	if p := s.pending; p != nil && p.tag == tag {
		p.settle() // answered without reaching Attach
	}
	s.pmu.Unlock()
	// Untracked before the reply goes out: the client may reuse the tag
	// as soon as it sees the reply.
	s.untrack(tag)
	s.reply(frame)
}

// Close stops taking messages, waits for the requests in flight to finish,
// ends the library's connection and closes the session's files. It is
// safe to call more than once and from several goroutines.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		s.tagMu.Lock()
		s.closing = true
		s.tagMu.Unlock()
		close(s.done)
		if s.onClose != nil {
			s.onClose()
		}
		s.tagMu.Lock()
		for len(s.tags) > 0 && !s.ended {
			s.idle.Wait()
		}
		s.tagMu.Unlock()
		time.Sleep(teardownGrace)
		close(s.eof)
	})
	<-s.served
	s.srv.mu.Lock()
	delete(s.srv.sessions, s)
	s.srv.mu.Unlock()
}

// sessionReader is the library's view of the T-message stream.
type sessionReader struct{ s *Session }

func (r sessionReader) Read(p []byte) (int, error) {
	s := r.s
	if len(s.cur) == 0 {
		select {
		case f := <-s.in:
			s.cur = f
		case <-s.eof:
			return 0, io.EOF
		}
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	return n, nil
}

func (sessionReader) Close() error { return nil }

// sessionWriter is the library's view of the R-message stream. The
// library writes one message in several pieces but never interleaves two.
type sessionWriter struct{ s *Session }

func (w sessionWriter) Write(p []byte) (int, error) {
	s := w.s
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wbuf = append(s.wbuf, p...)
	for len(s.wbuf) >= headerLen {
		size := int(le32(s.wbuf))
		if size < headerLen {
			// Cannot happen with the library's encoder; drop rather
			// than misframe everything after it.
			s.wbuf = s.wbuf[:0]
			break
		}
		if len(s.wbuf) < size {
			break
		}
		s.deliver(s.wbuf[:size])
		s.wbuf = append(s.wbuf[:0], s.wbuf[size:]...)
	}
	return len(p), nil
}

func (sessionWriter) Close() error { return nil }

// attacher gives the library each Tattach's root file.
type attacher struct{ s *Session }

// Attach implements p9.Attacher.
func (a attacher) Attach() (p9.File, error) {
	uid := a.s.takeAttachUID()
	return a.s.srv.attachRoot(uid, &a.s.files)
}

// fileSet is a session's open files.
type fileSet struct {
	mu sync.Mutex
	m  map[*file]struct{}
}

func (fs *fileSet) add(f *file) {
	if fs == nil {
		return
	}
	fs.mu.Lock()
	fs.m[f] = struct{}{}
	fs.mu.Unlock()
}

func (fs *fileSet) remove(f *file) {
	if fs == nil {
		return
	}
	fs.mu.Lock()
	delete(fs.m, f)
	fs.mu.Unlock()
}

func (fs *fileSet) closeAll() {
	fs.mu.Lock()
	left := make([]*file, 0, len(fs.m))
	for f := range fs.m {
		left = append(left, f)
	}
	fs.mu.Unlock()
	for _, f := range left {
		f.Close()
	}
}

func (s *Session) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
