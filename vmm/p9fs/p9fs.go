// Package p9fs serves one host directory to the guest as a 9P2000.L file
// system from inside the VMM's own process (the "inline" share-fs: no
// second process). The protocol engine is github.com/hugelgupf/p9; this
// package supplies the files it serves and a thin layer around the
// library's connection that fixes what the library gets wrong for a Linux
// v9fs guest.
//
// Confinement is by file descriptor, never by path string. Every file the
// guest holds is an O_PATH descriptor; a walk step is one name opened
// relative to its parent's descriptor with O_NOFOLLOW; every create,
// link, rename and unlink is an *at call on the parent's descriptor. So a
// symlink is reported to the guest as a symlink (the guest kernel resolves
// it in its own view) and is never followed on the host, and a directory
// swapped for a symlink between two steps yields the link, not its target.
// ".." is refused by the library's protocol layer; a direct Walk of ".."
// stays at the root and is checked to lie beneath it. Reopening for I/O
// goes through /proc/self/fd of the O_PATH descriptor, and only for
// regular files and directories, so a symlink's descriptor is never opened
// and no host device node or FIFO is ever opened by the server.
//
// What the guest gets, and what it does not:
//   - walk, getattr, setattr (mode, owner, size, atime/mtime), lopen,
//     lcreate, read, write, readdir (host getdents offsets, so large
//     directories page correctly), mkdir, symlink, readlink, link, mknod
//     (regular, FIFO, socket), renameat and rename, unlinkat, statfs,
//     fsync, flush.
//   - lock: real host OFD byte-range locks, one lock owner per fid. The
//     server never blocks on a lock: a conflict is answered "blocked" and
//     Linux's v9fs retries on its own, so a waiting lock holds no server
//     goroutine and Tflush stays prompt.
//   - getlock: the library has no Tgetlock; it is answered EOPNOTSUPP (so
//     fcntl(F_GETLK) in the guest fails unless the guest itself knows a
//     conflicting lock).
//   - xattrs: not supported, answered EOPNOTSUPP (EROFS for a write to a
//     read-only share). The library would answer EINVAL, which a guest
//     kernel reading security.capability on exec takes as a real error.
//   - mknod of character and block devices: EPERM, so the guest cannot
//     plant a host device node in the share.
//   - setuid/setgid bits: the library drops them from every mode it
//     decodes; they are carried past it for setattr (chmod), but lost on
//     lcreate and mkdir (the host still inherits setgid from a setgid
//     parent directory).
//
// Owners pass through as the guest gives them (the server runs as root;
// confinement is by directory): a file created through a fid is owned by
// the uid the guest attached that fid with.
package p9fs

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/sys/unix"
)

// Options configure a Server.
type Options struct {
	// ReadOnly refuses every mutating operation with EROFS.
	ReadOnly bool
}

// ErrClosed is returned by operations on a closed Server or Session.
var ErrClosed = errors.New("9P server closed")

// Server serves one host directory to any number of 9P sessions.
type Server struct {
	opts Options
	// rootFd is an O_PATH descriptor of the shared directory; every file
	// the guest reaches descends from a dup of it.
	rootFd  int
	rootDev uint64
	rootIno uint64

	// devMu guards devs: QID paths for files on other file systems than
	// the root's (mount points inside the share) get a per-device prefix
	// so that inode numbers from two devices do not collide.
	devMu sync.Mutex
	devs  map[uint64]uint64

	mu       sync.Mutex
	closed   bool
	sessions map[*Session]struct{}
}

// New serves the directory root. The path itself is trusted host
// configuration and is resolved normally; everything below it is confined.
func New(root string, opts Options) (*Server, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs("/proc/self/fd", &sfs); err != nil {
		return nil, fmt.Errorf("9P server for %s: check /proc/self/fd: %w", root, err)
	}
	if sfs.Type != unix.PROC_SUPER_MAGIC {
		// Reopening files for I/O relies on procfs magic links.
		return nil, fmt.Errorf("9P server for %s: /proc/self/fd is not procfs (type %#x)", root, sfs.Type)
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("9P server: open root %s: %w", root, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("9P server: stat root %s: %w", root, err)
	}
	return &Server{
		opts:     opts,
		rootFd:   fd,
		rootDev:  st.Dev,
		rootIno:  st.Ino,
		devs:     map[uint64]uint64{},
		sessions: map[*Session]struct{}{},
	}, nil
}

// Serve runs one 9P session over a byte stream (a socket, a pipe) until
// the peer closes it or the server is closed. Requests are served
// concurrently; replies are written whole, in completion order.
func (s *Server) Serve(conn io.ReadWriteCloser) error {
	var wmu sync.Mutex
	sess, err := s.newSession(func(frame []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		if _, err := conn.Write(frame); err != nil {
			// The reader sees the broken stream and ends the session.
			conn.Close()
		}
	}, func() { conn.Close() })
	if err != nil {
		conn.Close()
		return err
	}
	defer sess.Close()
	for {
		frame, err := readFrame(conn)
		if err != nil {
			if sess.isDone() || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("serve 9P: %w", err)
		}
		if err := sess.Submit(frame); err != nil {
			if errors.Is(err, ErrClosed) {
				return nil
			}
			return fmt.Errorf("serve 9P: %w", err)
		}
	}
}

// readFrame reads one whole 9P message from a stream.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	size := le32(hdr[:])
	if size < headerLen || size > maxMessage {
		// A stream cannot be resynchronised after a bad length.
		return nil, fmt.Errorf("read 9P message: length %d outside [%d, %d]", size, headerLen, maxMessage)
	}
	frame := make([]byte, size)
	copy(frame, hdr[:])
	if _, err := io.ReadFull(r, frame[4:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read 9P message body: %w", err)
	}
	return frame, nil
}

// Close ends every session (waiting for their requests to finish) and
// releases the root. Sessions opened afterwards fail with ErrClosed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	sessions := make([]*Session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.Close()
	}
	if err := unix.Close(s.rootFd); err != nil {
		return fmt.Errorf("close 9P server root: %w", err)
	}
	return nil
}

// isRoot reports whether dev/ino is the shared directory itself.
func (s *Server) isRoot(dev, ino uint64) bool {
	return dev == s.rootDev && ino == s.rootIno
}

// qidPath makes a QID path from an inode: the inode number on the root's
// device, the inode number under a small per-device prefix elsewhere.
func (s *Server) qidPath(dev, ino uint64) uint64 {
	if dev == s.rootDev {
		return ino
	}
	s.devMu.Lock()
	defer s.devMu.Unlock()
	idx, ok := s.devs[dev]
	if !ok {
		idx = uint64(len(s.devs) + 1)
		s.devs[dev] = idx
	}
	return ino ^ idx<<56
}
