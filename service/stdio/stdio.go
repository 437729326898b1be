// Package stdio opens the host side of a process's standard streams the way
// containerd hands them to a shim: fifos it created (the default, what ctr
// and CRI use), or a log URI in the stdout field — binary:// (and
// binary-v2://) starts a logging binary fed through pipes, file:// appends
// both streams to a file. The runtime then copies between these ends and
// the process in the guest.
package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/containerd/fifo"
)

// Config is what containerd asks for one process: paths of fifos, or a log
// URI in Stdout (Stderr is then the same URI or empty).
type Config struct {
	Stdin, Stdout, Stderr string
	// Terminal: the process has a pty, whose output arrives on stdout only.
	Terminal bool
}

// IsNull reports whether the process has no stdio at all (ctr --null-io).
func (c Config) IsNull() bool {
	return c.Stdin == "" && c.Stdout == "" && c.Stderr == ""
}

// Owner names the process for a logging binary, which gets the
// CONTAINER_ID and CONTAINER_NAMESPACE environment variables.
type Owner struct {
	ContainerID string
	Namespace   string
}

// Pipes are the opened host ends. Stdin, Stdout and Stderr are nil for a
// stream the process does not have.
type Pipes struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	stdin io.Closer

	closeOnce sync.Once
	closeErr  error
	// outputs are closed, in order, when the process is done with its
	// output: write ends first, so readers and a logger see EOF.
	outputs []io.Closer
	logger  *logger
}

// Open opens the host ends of cfg. On error nothing stays open and no
// logging binary runs. ctx bounds the wait for a fifo's reader and for a
// logging binary to say it is ready.
func Open(ctx context.Context, cfg Config, owner Owner) (_ *Pipes, retErr error) {
	p := &Pipes{}
	defer func() {
		if retErr != nil {
			p.Close()
		}
	}()
	if cfg.Stdin != "" {
		// Non-blocking open: containerd's client opens its end of stdin
		// only when it has something to write, which may be never.
		in, err := fifo.OpenFifo(context.WithoutCancel(ctx), cfg.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin fifo %s: %w", cfg.Stdin, err)
		}
		p.Stdin, p.stdin = in, in
	}
	if cfg.Stdout == "" && cfg.Stderr == "" {
		return p, nil
	}

	target := cfg.Stdout
	if target == "" {
		target = cfg.Stderr
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("stdout %q is neither a path nor a URI: %w", target, err)
	}
	switch u.Scheme {
	case "", "fifo":
		if err := p.openFifos(ctx, cfg, u.Scheme == "fifo"); err != nil {
			return nil, err
		}
	case "file":
		if err := p.openFile(u, cfg.Terminal); err != nil {
			return nil, err
		}
	case "binary", "binary-v2":
		if err := p.startLogger(ctx, u, cfg.Terminal, owner); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("stdout %q: unknown scheme %q: use a fifo path, binary://, binary-v2:// or file://", target, u.Scheme)
	}
	return p, nil
}

// openFifos opens containerd's stdout and stderr fifos for writing. A path
// that is a regular file is appended to instead.
func (p *Pipes) openFifos(ctx context.Context, cfg Config, uri bool) error {
	paths := []struct {
		name string
		path string
		dst  *io.Writer
	}{
		{"stdout", cfg.Stdout, &p.Stdout},
		{"stderr", cfg.Stderr, &p.Stderr},
	}
	for _, s := range paths {
		if s.path == "" || (s.name == "stderr" && cfg.Terminal) {
			continue
		}
		path := s.path
		if uri {
			u, err := url.Parse(path)
			if err != nil {
				return fmt.Errorf("%s %q: %w", s.name, path, err)
			}
			path = u.Path
		}
		w, closers, err := openOutput(ctx, path)
		if err != nil {
			return fmt.Errorf("open %s: %w", s.name, err)
		}
		*s.dst = w
		p.outputs = append(p.outputs, closers...)
	}
	return nil
}

// openOutput opens one output path for writing.
func openOutput(ctx context.Context, path string) (io.Writer, []io.Closer, error) {
	isFifo, err := fifo.IsFifo(path)
	if err != nil {
		return nil, nil, err
	}
	if !isFifo {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, nil, err
		}
		return f, []io.Closer{f}, nil
	}
	// Blocks until containerd's client has the fifo open for reading.
	w, err := fifo.OpenFifo(ctx, path, syscall.O_WRONLY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("fifo %s: %w", path, err)
	}
	// Holding a read end as well keeps writes from failing with EPIPE when
	// the client goes away (ctr run -d exits at once): output then waits
	// in the pipe instead of breaking the copy from the guest.
	r, err := fifo.OpenFifo(ctx, path, syscall.O_RDONLY, 0)
	if err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("fifo %s: %w", path, err)
	}
	return w, []io.Closer{w, r}, nil
}

// openFile appends both streams to the file named by a file:// URI,
// creating it and its directory.
func (p *Pipes) openFile(u *url.URL, terminal bool) error {
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return fmt.Errorf("log URI %q: want file:///absolute/path", u.String())
	}
	if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
		return fmt.Errorf("log file %s: %w", u.Path, err)
	}
	f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("log file %s: %w", u.Path, err)
	}
	// One writer for both streams: O_APPEND keeps each write whole, and
	// the two never race for a file offset.
	w := &lockedWriter{w: f}
	p.Stdout = w
	if !terminal {
		p.Stderr = w
	}
	p.outputs = append(p.outputs, f)
	return nil
}

// lockedWriter serializes writes of the two streams to one file.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// closeStdin closes the stdin end, so the runtime's copy into the guest
// ends. It is safe to call more than once, and before or after Close.
func (p *Pipes) closeStdin() error {
	if p == nil || p.stdin == nil {
		return nil
	}
	err := p.stdin.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// Close closes every end. Call it once the runtime has copied the last of
// the process's output: readers see EOF, and a logging binary is waited for
// (and killed if it does not exit after EOF). It is idempotent.
func (p *Pipes) Close() error {
	if p == nil {
		return nil
	}
	p.closeOnce.Do(func() {
		var errs []error
		if err := p.closeStdin(); err != nil {
			errs = append(errs, fmt.Errorf("close stdin: %w", err))
		}
		for _, c := range p.outputs {
			if err := c.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				errs = append(errs, fmt.Errorf("close output: %w", err))
			}
		}
		if p.logger != nil {
			if err := p.logger.wait(); err != nil {
				errs = append(errs, err)
			}
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}
