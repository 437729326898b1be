// Package qmp is a small client of the QEMU Machine Protocol: JSON messages
// over a unix socket. One goroutine owns reading the socket; it routes each
// answer to the command that asked (by id) and each asynchronous event to the
// subscriptions that want it, so commands may be issued from any goroutine.
package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned once the connection is gone (Close was called, or
// QEMU closed the socket, usually by exiting).
var ErrClosed = errors.New("qmp connection closed")

// Error is an error answer of QEMU to a command.
type Error struct {
	Command string
	Class   string // e.g. "GenericError", "CommandNotFound", "DeviceNotFound"
	Desc    string
}

func (e *Error) Error() string { return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc) }

// Event is an asynchronous QMP event.
type Event struct {
	Name string
	Data json.RawMessage
	Time time.Time
}

// Greeting is what QEMU says when a client connects.
type Greeting struct {
	QMP struct {
		Version struct {
			QEMU struct {
				Major, Minor, Micro int
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
		Capabilities []string `json:"capabilities"`
	} `json:"QMP"`
}

// message is any line QEMU sends.
type message struct {
	ID     string          `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Client is a QMP connection in command mode.
type Client struct {
	conn     *net.UnixConn
	greeting Greeting
	done     chan struct{} // closed when the reader has stopped

	writeMu sync.Mutex // serializes writes to conn

	mu      sync.Mutex
	nextID  uint64                     // guarded by mu
	pending map[string]chan message    // guarded by mu
	subs    map[*Subscription]struct{} // guarded by mu
	err     error                      // guarded by mu; why the reader stopped
}

// Dial connects to QEMU's QMP socket, reads the greeting and leaves
// capabilities negotiation, so commands can be executed. ctx bounds the
// handshake only.
func Dial(ctx context.Context, path string) (_ *Client, retErr error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp dial: %w", err)
	}
	conn := c.(*net.UnixConn)
	defer func() {
		if retErr != nil {
			conn.Close()
		}
	}()
	// Reading the greeting must not outlive ctx: QEMU sends it only once its
	// main loop runs.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	dec := json.NewDecoder(conn)
	var g Greeting
	err = dec.Decode(&g)
	if !stop() || ctx.Err() != nil {
		return nil, fmt.Errorf("qmp greeting: %w", ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	cl := &Client{
		conn:     conn,
		greeting: g,
		done:     make(chan struct{}),
		pending:  map[string]chan message{},
		subs:     map[*Subscription]struct{}{},
	}
	go cl.read(dec)
	if err := cl.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// Greeting returns what QEMU said on connect (its version).
func (c *Client) Greeting() Greeting { return c.greeting }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close ends the connection. Pending commands fail with ErrClosed.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// read is the only reader of the socket. It runs until the socket fails.
func (c *Client) read(dec *json.Decoder) {
	var err error
	for {
		var m message
		if err = dec.Decode(&m); err != nil {
			break
		}
		if m.Event != "" {
			c.publish(Event{Name: m.Event, Data: m.Data, Time: time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)})
			continue
		}
		c.mu.Lock()
		ch, ok := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ok {
			ch <- m // buffered: never blocks
		}
	}
	c.mu.Lock()
	c.err = fmt.Errorf("%w: %v", ErrClosed, err)
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	for s := range subs {
		s.end(ErrClosed)
	}
	c.conn.Close()
	close(c.done)
}

func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// Execute runs command with args (marshalled to JSON; nil for none) and
// unmarshals the answer into result (nil to ignore it).
func (c *Client) Execute(ctx context.Context, command string, args, result any) error {
	return c.ExecuteWithFiles(ctx, command, args, result)
}

// ExecuteWithFiles is Execute that passes files along with the command
// (SCM_RIGHTS), as getfd and add-fd expect. The caller keeps its files.
func (c *Client) ExecuteWithFiles(ctx context.Context, command string, args, result any, files ...*os.File) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	c.mu.Lock()
	if err := c.err; err != nil {
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	c.nextID++
	id := strconv.FormatUint(c.nextID, 10)
	ch := make(chan message, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id}
	b, err := json.Marshal(req)
	if err != nil {
		forget()
		return fmt.Errorf("qmp %s: encode arguments: %w", command, err)
	}
	if err := c.write(append(b, '\n'), files); err != nil {
		forget()
		return fmt.Errorf("qmp %s: %w", command, err)
	}

	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("qmp %s: %w", command, c.closedErr())
		}
		if m.Error != nil {
			return &Error{Command: command, Class: m.Error.Class, Desc: m.Error.Desc}
		}
		if result != nil {
			if err := json.Unmarshal(m.Return, result); err != nil {
				return fmt.Errorf("qmp %s: decode answer: %w", command, err)
			}
		}
		return nil
	case <-ctx.Done():
		// A late answer finds no pending entry and is dropped.
		forget()
		return fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

func (c *Client) write(b []byte, files []*os.File) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if len(files) == 0 {
		_, err := c.conn.Write(b)
		return err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	// The files travel with the first byte; QEMU reads them as it reads the
	// command. Whatever sendmsg left unsent follows as plain data.
	n, _, err := c.conn.WriteMsgUnix(b, unix.UnixRights(fds...), nil)
	runtime.KeepAlive(files)
	if err == nil && n < len(b) {
		_, err = c.conn.Write(b[n:])
	}
	return err
}
