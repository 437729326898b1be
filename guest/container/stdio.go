package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// IO is the stdio of one container process, seen from the agent.
type IO struct {
	// Stdin feeds the process; closing it gives the process EOF. With a
	// terminal, Close only ends the agent's input: the pty also carries the
	// output, so it stays open.
	Stdin io.WriteCloser
	// Stdout yields the output until every process holding it has exited.
	Stdout io.Reader
	// Stderr is nil with a terminal, whose pty carries stderr as well.
	Stderr io.Reader
}

// procIO owns both ends of a process's stdio until the process has started,
// then only the agent's.
type procIO struct {
	pub   IO
	child []*os.File // the process's ends; closed once it has started
	own   []*os.File // the agent's ends; closed by close
	sock  *os.File   // terminal: the agent's end of the console socket
	pty   *os.File   // terminal: the pty master, once received
}

func newProcIO(terminal bool) (_ *procIO, retErr error) {
	pio := &procIO{}
	defer func() {
		if retErr != nil {
			pio.close()
		}
	}()
	if terminal {
		// The container's init allocates the pty inside the container (its
		// /dev/pts) and sends the master back over this socket.
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		pio.sock = os.NewFile(uintptr(fds[0]), "console-socket")
		pio.child = append(pio.child, os.NewFile(uintptr(fds[1]), "console-socket-child"))
		return pio, nil
	}
	for i := range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("stdio pipe: %w", err)
		}
		if i == 0 {
			pio.child, pio.own = append(pio.child, r), append(pio.own, w)
		} else {
			pio.child, pio.own = append(pio.child, w), append(pio.own, r)
		}
	}
	pio.pub = IO{Stdin: pio.own[0], Stdout: pio.own[1], Stderr: pio.own[2]}
	return pio, nil
}

// attach gives the process its ends.
func (pio *procIO) attach(p *libcontainer.Process) {
	if pio.sock != nil {
		p.ConsoleSocket = pio.child[0]
		return
	}
	p.Stdin, p.Stdout, p.Stderr = pio.child[0], pio.child[1], pio.child[2]
}

// started drops the agent's copies of the process's ends, so that output
// reaches EOF when the process exits, and with a terminal takes the pty
// master that the process's init sent during the start.
func (pio *procIO) started() error {
	closeAll(pio.child)
	pio.child = nil
	if pio.sock == nil {
		return nil
	}
	master, err := recvFile(pio.sock)
	pio.sock.Close()
	pio.sock = nil
	if err != nil {
		return fmt.Errorf("receive pty master: %w", err)
	}
	pio.pty = master
	pio.own = append(pio.own, master)
	pio.pub = IO{Stdin: &ptyInput{f: master}, Stdout: ptyOutput{master}}
	return nil
}

// close releases every descriptor still held.
func (pio *procIO) close() {
	closeAll(pio.child)
	closeAll(pio.own)
	pio.child, pio.own = nil, nil
	if pio.sock != nil {
		pio.sock.Close()
		pio.sock = nil
	}
}

func (pio *procIO) resize(rows, cols uint16) error {
	if pio.pty == nil {
		return fmt.Errorf("%w: the process has no terminal to resize", ErrInvalidState)
	}
	rc, err := pio.pty.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	var ioErr error
	// Control, not Fd: Fd would switch the master back to blocking mode and
	// off the poller.
	if err := rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	if ioErr != nil {
		return fmt.Errorf("resize pty: %w", ioErr)
	}
	return nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// recvFile receives one descriptor sent with SCM_RIGHTS; libcontainer sends
// the pty's name as the data.
func recvFile(sock *os.File) (*os.File, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), name, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	}); err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, fmt.Errorf("recvmsg: %w", rerr)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("got %d descriptors (and %d bytes), want 1: the container's init sent no pty", len(fds), n)
	}
	// Non-blocking, so the poller serves it and Close interrupts a Read.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("set pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

// ptyOutput reads the pty master. Once every holder of the slave has exited
// the master reports EIO, which for a reader of the output is simply EOF.
type ptyOutput struct{ f *os.File }

func (o ptyOutput) Read(b []byte) (int, error) {
	n, err := o.f.Read(b)
	if errors.Is(err, syscall.EIO) {
		err = io.EOF
	}
	return n, err
}

// ptyInput writes to the pty master; Close ends input without closing the
// master, which the output still reads.
type ptyInput struct {
	f      *os.File
	mu     sync.Mutex
	closed bool // guarded by mu
}

func (in *ptyInput) Write(b []byte) (int, error) {
	in.mu.Lock()
	closed := in.closed
	in.mu.Unlock()
	if closed {
		return 0, fmt.Errorf("write terminal input: %w", os.ErrClosed)
	}
	return in.f.Write(b)
}

func (in *ptyInput) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	return nil
}
