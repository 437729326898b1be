package channel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// FindPort returns the device path of the virtio-serial port called name.
// There is no udev in the guest, so /dev/virtio-ports/NAME does not exist;
// the name is in sysfs and the device node is /dev/vportNpM.
func FindPort(sysDir, devDir, name string) (string, error) {
	ports, err := filepath.Glob(filepath.Join(sysDir, "vport*"))
	if err != nil {
		return "", err
	}
	var seen []string
	for _, p := range ports {
		b, err := os.ReadFile(filepath.Join(p, "name"))
		if err != nil {
			continue
		}
		n := strings.TrimSpace(string(b))
		if n == name {
			return filepath.Join(devDir, filepath.Base(p)), nil
		}
		seen = append(seen, n)
	}
	return "", fmt.Errorf("no virtio-serial port named %q (ports: %q)", name, seen)
}

// ListenSerial waits for the port named name to appear (the virtio_console
// module may still be probing) and returns a listener whose Accept hands out
// the port each time the host side connects.
func ListenSerial(ctx context.Context, sysDir, devDir, name string) (net.Listener, error) {
	var path string
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		if path, err = FindPort(sysDir, devDir, name); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return &serialListener{path: path, name: name, done: make(chan struct{})}, nil
}

// serialListener turns a single virtio-serial port into a listener. A port
// is one stream: while a connection is open Accept waits for it to end; the
// port reads EOF while no host is connected, so Accept polls until one is.
type serialListener struct {
	path, name string
	mu         sync.Mutex // guards cur
	cur        *serialConn
	done       chan struct{}
	closeOnce  sync.Once
}

func (l *serialListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	prev := l.cur
	l.mu.Unlock()
	if prev != nil {
		select {
		case <-prev.closed:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	for {
		select {
		case <-l.done:
			return nil, net.ErrClosed
		default:
		}
		f, err := os.OpenFile(l.path, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", l.path, err)
		}
		if hostConnected(f) {
			c := &serialConn{f: f, name: l.name, closed: make(chan struct{})}
			l.mu.Lock()
			l.cur = c
			l.mu.Unlock()
			return c, nil
		}
		f.Close()
		select {
		case <-l.done:
			return nil, net.ErrClosed
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// hostConnected reports whether the host end of the port is open: the
// virtio_console driver signals POLLHUP while it is not.
func hostConnected(f *os.File) bool {
	fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && fds[0].Revents&unix.POLLHUP == 0
	}
}

func (l *serialListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.mu.Lock()
		if l.cur != nil {
			l.cur.Close()
		}
		l.mu.Unlock()
	})
	return nil
}

func (l *serialListener) Addr() net.Addr { return portAddr(l.name) }

type portAddr string

func (a portAddr) Network() string { return "virtio-serial" }
func (a portAddr) String() string  { return string(a) }

// serialConn is one host session on the port. A read of 0 bytes means the
// host went away: it ends the session with io.EOF.
type serialConn struct {
	f         *os.File
	name      string
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *serialConn) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	if n == 0 && (err == nil || errors.Is(err, io.EOF)) {
		return 0, io.EOF
	}
	return n, err
}

func (c *serialConn) Write(b []byte) (int, error) { return c.f.Write(b) }

func (c *serialConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.f.Close()
		close(c.closed)
	})
	return err
}

func (c *serialConn) LocalAddr() net.Addr                { return portAddr(c.name) }
func (c *serialConn) RemoteAddr() net.Addr               { return portAddr("host") }
func (c *serialConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *serialConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *serialConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }
