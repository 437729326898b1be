package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/joeyrt/joey/vmm/memory"
)

// Descriptor flags (virtio 1.2 §2.7.5).
const (
	descFNext     = 1
	descFWrite    = 2
	descFIndirect = 4
)

// availFNoInterrupt is the driver's "no interrupts, please" flag.
const availFNoInterrupt = 1

const descSize = 16

// ErrBadChain is wrapped by every error about a descriptor chain the
// driver built wrongly (out of RAM, a loop, a writable buffer before a
// readable one, nested indirection, ...).
var ErrBadChain = errors.New("bad descriptor chain")

// QueueConfig is what the driver programs for one split virtqueue.
type QueueConfig struct {
	Size              uint16
	Desc, Avail, Used uint64
}

// Queue is the device side of one split virtqueue (virtio 1.2 §2.7). One
// goroutine at a time pops and pushes; devices that serve a queue from
// several goroutines lock around it.
type Queue struct {
	mem      *memory.Memory
	cfg      QueueConfig
	indirect bool
	eventIdx bool
	// nextAvail is the next avail ring slot the device will read.
	nextAvail uint16
	// nextUsed is the used index the device will publish next.
	nextUsed uint16
	// signalledUsed is the used index at the last interrupt (EVENT_IDX).
	signalledUsed uint16
	// fence is only a target for a locked read-modify-write: a full
	// barrier after publishing avail_event (EVENT_IDX).
	fence uint32
	// descs, avail and used are the validated ring areas.
	descs, avail, used []byte
}

// NewQueue checks that the rings of cfg lie in guest RAM and are aligned as
// the spec requires, and returns the queue. features are the negotiated
// feature bits (indirect descriptors, event index).
func NewQueue(mem *memory.Memory, cfg QueueConfig, features uint64) (*Queue, error) {
	n := uint64(cfg.Size)
	if n == 0 || n > 32768 || n&(n-1) != 0 {
		return nil, fmt.Errorf("queue size %d: want a power of 2 up to 32768", n)
	}
	if cfg.Desc%16 != 0 || cfg.Avail%2 != 0 || cfg.Used%4 != 0 {
		return nil, fmt.Errorf("queue rings at desc %#x avail %#x used %#x: misaligned (16, 2, 4)", cfg.Desc, cfg.Avail, cfg.Used)
	}
	q := &Queue{mem: mem, cfg: cfg, indirect: features&FeatureIndirectDesc != 0, eventIdx: features&FeatureEventIdx != 0}
	var err error
	if q.descs, err = mem.Slice(cfg.Desc, n*descSize); err != nil {
		return nil, fmt.Errorf("queue descriptor table: %w", err)
	}
	if q.avail, err = mem.Slice(cfg.Avail, 6+2*n); err != nil {
		return nil, fmt.Errorf("queue avail ring: %w", err)
	}
	if q.used, err = mem.Slice(cfg.Used, 6+8*n); err != nil {
		return nil, fmt.Errorf("queue used ring: %w", err)
	}
	return q, nil
}

// Size is the number of descriptors.
func (q *Queue) Size() uint16 { return q.cfg.Size }

// Buffer is one guest buffer of a chain, as a slice of guest RAM.
type Buffer = []byte

// Chain is one descriptor chain the driver made available: the readable
// buffers (driver → device) then the writable ones (device → driver).
type Chain struct {
	// Head is the index of the first descriptor, returned with Push.
	Head uint16
	// Readable and Writable are slices of guest RAM, in chain order.
	Readable, Writable []Buffer
}

// ReadableLen is the total length of the readable buffers.
func (c *Chain) ReadableLen() int { return total(c.Readable) }

// WritableLen is the total length of the writable buffers.
func (c *Chain) WritableLen() int { return total(c.Writable) }

func total(bs []Buffer) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// Read gathers the readable buffers into one byte slice.
func (c *Chain) Read() []byte {
	out := make([]byte, 0, c.ReadableLen())
	for _, b := range c.Readable {
		out = append(out, b...)
	}
	return out
}

// Write scatters p over the writable buffers and returns how many bytes
// fit.
func (c *Chain) Write(p []byte) int {
	n := 0
	for _, b := range c.Writable {
		if len(p) == 0 {
			break
		}
		k := copy(b, p)
		p = p[k:]
		n += k
	}
	return n
}

// loadU16 reads the 16-bit ring index at b[off:] with acquire ordering: the
// driver writes ring entries before the index. A 2-aligned uint16 always
// lies inside one aligned 32-bit word, which is loaded atomically.
func loadU16(b []byte, off int) uint16 {
	ptr := unsafe.Pointer(&b[off])
	shift := uintptr(ptr) & 3
	v := atomic.LoadUint32((*uint32)(unsafe.Add(ptr, -int(shift))))
	return uint16(v >> (shift * 8))
}

// Pending reports whether the driver has made chains available that Pop
// has not returned yet.
func (q *Queue) Pending() bool {
	return loadU16(q.avail, 2) != q.nextAvail
}

// Pop returns the next available chain, or ok=false when the ring is
// empty. An error means the driver broke the ring; the device should stop
// using the queue (and may ask for a reset).
func (q *Queue) Pop() (c Chain, ok bool, err error) {
	availIdx := loadU16(q.avail, 2)
	if availIdx == q.nextAvail {
		return Chain{}, false, nil
	}
	if uint16(availIdx-q.nextAvail) > q.cfg.Size {
		return Chain{}, false, fmt.Errorf("%w: avail index %d is %d ahead of the device in a queue of %d", ErrBadChain, availIdx, uint16(availIdx-q.nextAvail), q.cfg.Size)
	}
	slot := int(q.nextAvail % q.cfg.Size)
	head := binary.LittleEndian.Uint16(q.avail[4+2*slot:])
	q.nextAvail++
	if q.eventIdx {
		// avail_event: tell the driver which index we will look at next.
		binary.LittleEndian.PutUint16(q.used[4+8*int(q.cfg.Size):], q.nextAvail)
		// The store must be visible before the device next loads the
		// avail index (a plain load, even on x86 free to pass a plain
		// store): otherwise the driver can publish, read the stale
		// avail_event, skip its kick, and the device, seeing an empty
		// ring, waits for ever. A locked add is a full barrier.
		atomic.AddUint32(&q.fence, 1)
	}
	c, err = q.walk(head)
	if err != nil {
		return Chain{}, false, err
	}
	return c, true, nil
}

type desc struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

func readDesc(table []byte, i uint16) desc {
	b := table[int(i)*descSize:]
	return desc{
		addr:  binary.LittleEndian.Uint64(b),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}
}

// walk follows the chain at head. Loops are caught by counting: a chain can
// visit at most as many descriptors as its table holds.
func (q *Queue) walk(head uint16) (Chain, error) {
	c := Chain{Head: head}
	if head >= q.cfg.Size {
		return c, fmt.Errorf("%w: head %d outside a queue of %d", ErrBadChain, head, q.cfg.Size)
	}
	table, limit := q.descs, uint32(q.cfg.Size)
	i, seen, indirect := head, uint32(0), false
	for {
		if seen++; seen > limit {
			return c, fmt.Errorf("%w: chain at %d loops or exceeds %d descriptors", ErrBadChain, head, limit)
		}
		d := readDesc(table, i)
		if d.flags&descFIndirect != 0 {
			switch {
			case !q.indirect:
				return c, fmt.Errorf("%w: indirect descriptor without VIRTIO_F_INDIRECT_DESC", ErrBadChain)
			case indirect:
				return c, fmt.Errorf("%w: nested indirect descriptor", ErrBadChain)
			case d.flags&descFNext != 0:
				return c, fmt.Errorf("%w: indirect descriptor with NEXT set", ErrBadChain)
			case d.len == 0 || d.len%descSize != 0 || d.len/descSize > 65536:
				return c, fmt.Errorf("%w: indirect table of %d bytes", ErrBadChain, d.len)
			}
			t, err := q.mem.Slice(d.addr, uint64(d.len))
			if err != nil {
				return c, fmt.Errorf("%w: indirect table: %w", ErrBadChain, err)
			}
			table, limit, i, seen, indirect = t, d.len/descSize, 0, 0, true
			continue
		}
		buf, err := q.mem.Slice(d.addr, uint64(d.len))
		if err != nil {
			return c, fmt.Errorf("%w: descriptor %d: %w", ErrBadChain, i, err)
		}
		if d.flags&descFWrite != 0 {
			c.Writable = append(c.Writable, buf)
		} else {
			if len(c.Writable) > 0 {
				return c, fmt.Errorf("%w: readable descriptor %d after a writable one", ErrBadChain, i)
			}
			c.Readable = append(c.Readable, buf)
		}
		if d.flags&descFNext == 0 {
			return c, nil
		}
		if uint32(d.next) >= limit {
			return c, fmt.Errorf("%w: next %d outside a table of %d", ErrBadChain, d.next, limit)
		}
		i = d.next
	}
}

// Push returns chain head to the driver with written bytes of its writable
// buffers filled, and reports whether the driver wants an interrupt for
// it. Entries become visible to the driver in order.
func (q *Queue) Push(head uint16, written uint32) (notify bool) {
	return q.PushAll([]Used{{Head: head, Written: written}})
}

// Used is one chain given back to the driver.
type Used struct {
	Head    uint16
	Written uint32
}

// PushAll is Push for several chains under one used-index update, so the
// driver sees all of them or none: a virtio-net packet spread over merged
// rx buffers must not be seen in part.
func (q *Queue) PushAll(used []Used) (notify bool) {
	if len(used) == 0 {
		return false
	}
	old := q.nextUsed
	for _, u := range used {
		slot := int(q.nextUsed % q.cfg.Size)
		e := q.used[4+8*slot:]
		binary.LittleEndian.PutUint32(e, uint32(u.Head))
		binary.LittleEndian.PutUint32(e[4:], u.Written)
		q.nextUsed++
	}
	// The used ring is 4-aligned, so flags and idx are one word; the
	// atomic store orders the entry before the index (release).
	flags := uint32(binary.LittleEndian.Uint16(q.used[0:]))
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&q.used[0])), flags|uint32(q.nextUsed)<<16)
	if q.eventIdx {
		// used_event: interrupt when the new index passes it.
		ev := loadU16(q.avail, 4+2*int(q.cfg.Size))
		return uint16(q.nextUsed-ev-1) < uint16(q.nextUsed-old)
	}
	return loadU16(q.avail, 0)&availFNoInterrupt == 0
}
