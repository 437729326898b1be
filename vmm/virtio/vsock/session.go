package vsock

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/joeyrt/joey/vmm/virtio"
)

const (
	// firstPort is the lowest host port Dial uses: below it are the
	// privileged ports, which Linux lets only privileged binds take.
	firstPort = 1024
	// portAny is VMADDR_PORT_ANY, never a port of a connection.
	portAny = 1<<32 - 1
	// maxConns bounds the connections of one activation: each may hold
	// bufAlloc bytes received and sendBuffer bytes to send.
	maxConns = 1024
	// maxReplies bounds the resets waiting for receive buffers. A guest
	// that sends to dead connections and never takes the answers loses
	// the excess rather than grows the VMM.
	maxReplies = 2 * QueueSize
)

// session is the device between one Activate and the Reset after it. Its
// goroutine alone uses the queues and guest memory.
type session struct {
	d        *Device
	rxq, txq *virtio.Queue
	irq      virtio.Interrupter
	// kick holds at most one pending wake-up: whatever arrives while the
	// goroutine works is covered by that work or by the next pass.
	kick chan struct{}
	stop <-chan struct{}

	// Guarded by d.mu.
	//
	// dead is set once the session's connections were ended (reset,
	// close, a broken ring): nothing more is done for them.
	dead bool
	// conns are the open connections by host port.
	conns map[uint32]*conn
	// sendq are the connections with packets for the guest, in turn.
	sendq []*conn
	// replies are resets that belong to no connection, first in line.
	replies []header
	// err is why the goroutine stopped (see Device.Err).
	err error
	// dropped and lastDrop count malformed guest packets.
	dropped  uint64
	lastDrop error

	// Goroutine only: the packet being built and the chains to return.
	pkt  []byte
	used []virtio.Used
}

func newSession(d *Device, rxq, txq *virtio.Queue, irq virtio.Interrupter, stop <-chan struct{}) *session {
	return &session{
		d:     d,
		rxq:   rxq,
		txq:   txq,
		irq:   irq,
		kick:  make(chan struct{}, 1),
		stop:  stop,
		conns: map[uint32]*conn{},
	}
}

func (s *session) wake() { virtio.WakeUp(s.kick) }

func (s *session) run() {
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		if err := s.serve(); err != nil {
			// A broken ring or a dead interrupt line: serving on would
			// only guess. Idle until the driver resets the device.
			s.d.mu.Lock()
			if s.err == nil {
				s.err = err
			}
			s.failAll(err, err)
			s.d.mu.Unlock()
			<-s.stop
			return
		}
	}
}

// serve takes a ring's worth of what the guest sent, then gives it what
// the host has for it while it supplies buffers. When work is left it
// kicks itself, so a reset is noticed in between.
func (s *session) serve() error {
	txMore, err := s.drainTx()
	if err != nil {
		return err
	}
	rxMore, err := s.fillRx()
	if err != nil {
		return err
	}
	if txMore || rxMore {
		s.wake()
	}
	return nil
}

// push returns the chains to the driver of queue q and signals it if it
// wants that.
func (s *session) push(q int, vq *virtio.Queue) error {
	used := s.used
	s.used = s.used[:0]
	if !vq.PushAll(used) {
		return nil
	}
	if err := s.irq.Queue(q); err != nil {
		return fmt.Errorf("virtio-vsock: signal queue %d: %w", q, err)
	}
	return nil
}

// open registers a new connection to the guest's port and queues its
// request. d.mu is held.
func (s *session) open(port uint32) (*conn, error) {
	if len(s.conns) >= maxConns {
		return nil, fmt.Errorf("%d connections open: at most %d", len(s.conns), maxConns)
	}
	// Ports count on from the last, so one is not used again while the
	// guest may still hold packets of the connection before.
	local := s.d.nextPort
	for s.conns[local] != nil || local < firstPort || local == portAny {
		local++
	}
	s.d.nextPort = local + 1
	c := &conn{d: s.d, s: s, local: local, remote: port, attached: true, sendRequest: true, wake: make(chan struct{})}
	c.Deadlines = virtio.NewDeadlines(&s.d.mu, &c.closed, c.broadcast, c.opError)
	s.conns[local] = c
	s.enqueue(c)
	return c, nil
}

// abort gives up a connection Dial stopped waiting for. The guest is told
// only if the request reached it.
func (s *session) abort(c *conn) {
	sent := !c.sendRequest
	s.forget(c)
	c.dialErr = errors.New("dial abandoned")
	if sent {
		s.reply(c.header(opRST))
	}
}

// forget drops c from the session: no more packets go to the guest for it,
// and the guest's packets for it get a reset.
func (s *session) forget(c *conn) {
	if s.conns[c.local] == c {
		delete(s.conns, c.local)
	}
	c.attached = false
	c.tx = nil
	c.sendRequest, c.sendShutdown, c.sendCredit = false, false, false
	c.broadcast()
}

// failAll ends every connection: Dial fails with readErr, reads return
// readErr once what they hold is read, and writes fail with writeErr.
func (s *session) failAll(readErr, writeErr error) {
	for _, c := range s.conns {
		s.forget(c)
		if !c.connected && c.dialErr == nil {
			c.dialErr = readErr
		}
		c.end(readErr, writeErr)
	}
	s.dead = true
	s.sendq, s.replies = nil, nil
}

// enqueue puts c in line for the receive queue, once.
func (s *session) enqueue(c *conn) {
	if !c.queued {
		c.queued = true
		s.sendq = append(s.sendq, c)
	}
	s.wake()
}

// reply queues a packet that belongs to no connection.
func (s *session) reply(h header) {
	if len(s.replies) < maxReplies {
		s.replies = append(s.replies, h)
	}
	s.wake()
}

// drop counts a malformed guest packet.
func (s *session) drop(err error) {
	s.dropped++
	s.lastDrop = err
}

func putU64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }
