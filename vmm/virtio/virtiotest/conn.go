package virtiotest

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// Host-side test support for devices that hand the host a net.Conn
// (virtio-console ports, virtio-vsock connections): reads and writes run
// in goroutines so a test can check whether they finish, and how.

const (
	// WaitFor is how long a test waits for something that must happen.
	WaitFor = 10 * time.Second
	// Quiet is how long a test watches for something that must not
	// happen.
	Quiet = 100 * time.Millisecond
)

// Result is what a host goroutine's Read or Write ended with.
type Result struct {
	N    int
	Data []byte
	Err  error
}

// HostWrite writes data on c in a goroutine.
func HostWrite(c net.Conn, data []byte) <-chan Result {
	ch := make(chan Result, 1)
	go func() {
		n, err := c.Write(data)
		ch <- Result{N: n, Err: err}
	}()
	return ch
}

// HostRead reads exactly n bytes from c in a goroutine.
func HostRead(c net.Conn, n int) <-chan Result {
	ch := make(chan Result, 1)
	go func() {
		b := make([]byte, n)
		k, err := io.ReadFull(c, b)
		ch <- Result{N: k, Data: b[:k], Err: err}
	}()
	return ch
}

// Await returns what ch delivers, failing the test if nothing arrives
// within WaitFor; what names the operation in the failure.
func Await(t testing.TB, ch <-chan Result, what string) Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(WaitFor):
		t.Fatalf("%s did not finish within %v", what, WaitFor)
	}
	panic("unreachable")
}

// Pending fails the test if ch delivers anything within Quiet: the
// operation named what should still be waiting.
func Pending(t testing.TB, ch <-chan Result, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s finished (n %d, err %v) but should still wait", what, r.N, r.Err)
	case <-time.After(Quiet):
	}
}

// Pattern is n bytes that differ per seed and per position, so mixed or
// reordered streams do not compare equal.
func Pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed ^ byte(i) ^ byte(i>>8)*7 ^ byte(i>>16)*13
	}
	return b
}

// Closed checks that c, already closed by the test, fails Read, Write
// and a second Close with net.ErrClosed.
func Closed(t testing.TB, c net.Conn) {
	t.Helper()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close = %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close = %v", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
}
