package agent

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
)

// checkOnly is an agent that answers the health check, all Connect asks.
type checkOnly struct{ protocol.AgentService }

func (checkOnly) Check(context.Context, *protocol.CheckRequest) (*protocol.CheckResponse, error) {
	return &protocol.CheckResponse{}, nil
}

// bootingGuest is an agent channel whose guest end is served only once the
// guest has booted. Streams are socket pairs, so a request sent earlier
// waits in the stream as it does in a virtio-serial port the guest has not
// opened yet.
type bootingGuest struct {
	srv    *ttrpc.Server
	booted chan struct{}
	dials  atomic.Int32
	// refuse fails that many first dials, as before the VMM listens.
	refuse atomic.Int32
	// dead streams are closed by the guest end on arrival.
	dead atomic.Int32
	wg   sync.WaitGroup
}

func newBootingGuest(t *testing.T) *bootingGuest {
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	protocol.RegisterAgentService(srv, checkOnly{})
	g := &bootingGuest{srv: srv, booted: make(chan struct{})}
	t.Cleanup(func() {
		srv.Close()
		g.wg.Wait()
	})
	return g
}

func (g *bootingGuest) dial(ctx context.Context) (net.Conn, error) {
	if g.refuse.Add(-1) >= 0 {
		return nil, errors.New("connection refused")
	}
	g.dials.Add(1)
	host, guest, err := socketPair()
	if err != nil {
		return nil, err
	}
	if g.dead.Add(-1) >= 0 {
		guest.Close()
		return host, nil
	}
	l := &oneConn{conn: make(chan net.Conn, 1), done: make(chan struct{})}
	l.conn <- guest
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		<-g.booted
		g.srv.Serve(context.Background(), l)
	}()
	return host, nil
}

func socketPair() (net.Conn, net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "agent-channel")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
	}
	return conns[0], conns[1], nil
}

// oneConn is a listener that yields one connection.
type oneConn struct {
	conn chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *oneConn) Accept() (net.Conn, error) {
	select {
	case c := <-l.conn:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneConn) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *oneConn) Addr() net.Addr { return &net.UnixAddr{Name: "pair", Net: "unix"} }

func TestConnectWaitsForTheBootOnOneStream(t *testing.T) {
	g := newBootingGuest(t)
	// The boot takes longer than a later attempt's bound: one stream must
	// still be enough, so the guest never sees its port hang up while it
	// boots.
	time.AfterFunc(laterAttempt+500*time.Millisecond, func() { close(g.booted) })
	c, err := Connect(context.Background(), g.dial)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := g.dials.Load(); n != 1 {
		t.Fatalf("Connect opened %d streams, want 1", n)
	}
}

func TestConnectRedialsUntilTheVMMListens(t *testing.T) {
	g := newBootingGuest(t)
	g.refuse.Store(3)
	close(g.booted)
	c, err := Connect(context.Background(), g.dial)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := g.dials.Load(); n != 1 {
		t.Fatalf("Connect opened %d streams, want 1 after the refused dials", n)
	}
}

func TestConnectReplacesAStreamThatEnded(t *testing.T) {
	g := newBootingGuest(t)
	g.dead.Store(2)
	close(g.booted)
	c, err := Connect(context.Background(), g.dial)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := g.dials.Load(); n != 3 {
		t.Fatalf("Connect opened %d streams, want 3 (two ended at once)", n)
	}
}

func TestConnectReplacesAWedgedFirstStream(t *testing.T) {
	defer func(d time.Duration) { firstAttempt = d }(firstAttempt)
	firstAttempt = 200 * time.Millisecond
	g := newBootingGuest(t)
	// The first stream is never served (its request was lost); the guest
	// is up for the second.
	wedged := true
	dial := func(ctx context.Context) (net.Conn, error) {
		if wedged {
			wedged = false
			host, guest, err := socketPair()
			if err == nil {
				t.Cleanup(func() { guest.Close() })
			}
			return host, err
		}
		return g.dial(ctx)
	}
	close(g.booted)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, dial)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestConnectErrorNamesTheLastFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Connect(ctx, func(context.Context) (net.Conn, error) {
		return nil, errors.New("no such socket: /run/vm/agent.sock")
	})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no such socket") {
		t.Fatalf("err = %v, want the deadline and the last dial error", err)
	}
}
