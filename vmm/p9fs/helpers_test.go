package p9fs

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"github.com/joeyrt/joey/vmm/p9fs/p9fstest"
)

const secret = "HOST SECRET"

// layout makes base/share (served) and base/outside/secret (must never
// be readable through the share), and returns both directories.
func layout(t *testing.T) (share, outside string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the 9P server runs as root")
	}
	base := t.TempDir()
	share = filepath.Join(base, "share")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{share, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	return share, outside
}

func newServer(t *testing.T, root string, opts Options) *Server {
	t.Helper()
	srv, err := New(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// attach connects the library's client to srv over an in-memory stream
// and returns the root fid.
func attach(t *testing.T, srv *Server) p9.File {
	t.Helper()
	cconn, sconn := net.Pipe()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sconn) }()
	c, err := p9.NewClient(cconn, p9.WithMessageSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	root, err := c.Attach("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after the client closed")
		}
	})
	return root
}

func walk(t *testing.T, f p9.File, names ...string) p9.File {
	t.Helper()
	_, nf, err := f.Walk(names)
	if err != nil {
		t.Fatalf("walk %q: %v", names, err)
	}
	t.Cleanup(func() { nf.Close() })
	return nf
}

func open(t *testing.T, f p9.File, names []string, flags p9.OpenFlags) p9.File {
	t.Helper()
	nf := walk(t, f, names...)
	if _, _, err := nf.Open(flags); err != nil {
		t.Fatalf("open %q: %v", names, err)
	}
	return nf
}

func readAll(t *testing.T, f p9.File) string {
	t.Helper()
	buf := make([]byte, 1<<16)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v", err)
	}
	return string(buf[:n])
}

func wantErrno(t *testing.T, what string, err error, want linux.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}

// raw drives a Session with hand-encoded messages, one at a time.
type raw struct {
	t       *testing.T
	sess    *Session
	replies chan []byte
}

func newRaw(t *testing.T, srv *Server) *raw {
	t.Helper()
	r := &raw{t: t, replies: make(chan []byte, 16)}
	sess, err := srv.NewSession(func(frame []byte) {
		r.replies <- append([]byte(nil), frame...)
	})
	if err != nil {
		t.Fatal(err)
	}
	r.sess = sess
	t.Cleanup(sess.Close)
	return r
}

// rpc sends one message and returns the reply's type and body.
func (r *raw) rpc(frame []byte) (uint8, []byte) {
	r.t.Helper()
	if err := r.sess.Submit(frame); err != nil {
		r.t.Fatalf("submit: %v", err)
	}
	select {
	case rep := <-r.replies:
		if got, want := frameTag(rep), frameTag(frame); got != want {
			r.t.Fatalf("reply tag %d, want %d", got, want)
		}
		return rep[4], rep[headerLen:]
	case <-time.After(10 * time.Second):
		r.t.Fatalf("no reply to message type %d", frame[4])
		return 0, nil
	}
}

// ok sends a message and fails the test unless the reply is want.
func (r *raw) ok(frame []byte, want uint8) []byte {
	r.t.Helper()
	typ, body := r.rpc(frame)
	if typ == msgRlerror {
		r.t.Fatalf("message type %d: Rlerror %v", frame[4], linux.Errno(le32(body)))
	}
	if typ != want {
		r.t.Fatalf("message type %d: reply type %d, want %d", frame[4], typ, want)
	}
	return body
}

// lerror sends a message and returns the Rlerror's errno (0 if none).
func (r *raw) lerror(frame []byte) linux.Errno {
	r.t.Helper()
	typ, body := r.rpc(frame)
	if typ != msgRlerror {
		return 0
	}
	return linux.Errno(le32(body))
}

// Message types the raw tests send.
const (
	tVersion  = 100
	rVersion  = 101
	tAttach   = 104
	rAttach   = 105
	tWalk     = 110
	rWalk     = 111
	tLopen    = 12
	rLopen    = 13
	tLcreate  = 14
	rLcreate  = 15
	tSetattr  = 26
	rSetattr  = 27
	tClunk    = 120
	rClunk    = 121
	tRead     = 116
	rRead     = 117
	tXattrwlk = 30
	tXattrcrt = 32
	tGetlock  = 54
	tMkdir    = 72
	rMkdir    = 73
)

// handshake negotiates 9P2000.L and attaches fid 1 as uid.
func (r *raw) handshake(uid uint32) {
	r.t.Helper()
	r.ok(p9fstest.Tmsg(tVersion, noTag, uint32(64<<10), "9P2000.L"), rVersion)
	r.ok(p9fstest.Tmsg(tAttach, 1, uint32(1), uint32(0xffffffff), "user", "", uid), rAttach)
}
