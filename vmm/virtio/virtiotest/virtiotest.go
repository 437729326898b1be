// Package virtiotest is the driver side of virtio, simulated in Go over the
// same guest-memory type the devices use: a split virtqueue a test fills
// with descriptor chains and reads back from the used ring, a bump
// allocator for guest buffers, and an Interrupter that records signals.
// Device tests use it the way a guest's virtio driver would.
package virtiotest

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
)

// Memory returns size bytes of guest RAM, freed when the test ends.
func Memory(t testing.TB, size uint64) *memory.Memory {
	t.Helper()
	m, err := memory.New(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Alloc hands out guest-physical ranges from [next, end), 16-aligned.
type Alloc struct {
	mu        sync.Mutex
	next, end uint64
}

// NewAlloc allocates from [start, end).
func NewAlloc(start, end uint64) *Alloc { return &Alloc{next: start, end: end} }

// Get returns the address of n fresh bytes.
func (a *Alloc) Get(n uint64) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	addr := (a.next + 15) &^ 15
	if addr+n > a.end {
		panic(fmt.Sprintf("virtiotest: out of guest memory allocating %d bytes", n))
	}
	a.next = addr + n
	return addr
}

// Desc is one raw descriptor, for tests that build broken chains.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// Descriptor flags, as a driver writes them.
const (
	FlagNext     = 1
	FlagWrite    = 2
	FlagIndirect = 4
)

// Queue is the driver side of one split virtqueue.
type Queue struct {
	mem   *memory.Memory
	alloc *Alloc
	// Config is where the rings are, for the transport or virtio.NewQueue.
	Config virtio.QueueConfig
	// nextDesc is the next free descriptor index (descriptors are used
	// round-robin: tests keep fewer than Size chains in flight).
	nextDesc uint16
	availIdx uint16
	lastUsed uint16
	// writable remembers each head's writable buffers for Used.
	writable map[uint16][]Desc
}

// NewQueue lays out rings of size entries in guest memory from alloc.
func NewQueue(mem *memory.Memory, alloc *Alloc, size uint16) *Queue {
	n := uint64(size)
	return &Queue{
		mem:   mem,
		alloc: alloc,
		Config: virtio.QueueConfig{
			Size:  size,
			Desc:  alloc.Get(16 * n),
			Avail: alloc.Get(6 + 2*n),
			Used:  alloc.Get(6 + 8*n),
		},
		writable: map[uint16][]Desc{},
	}
}

// Device returns the device's view of this queue.
func (q *Queue) Device(t testing.TB, features uint64) *virtio.Queue {
	t.Helper()
	dq, err := virtio.NewQueue(q.mem, q.Config, features)
	if err != nil {
		t.Fatal(err)
	}
	return dq
}

// Add copies each readable buffer into fresh guest memory, allocates
// writable buffers of the given lengths, chains them and makes the chain
// available. It returns the head.
func (q *Queue) Add(readable [][]byte, writable []int) uint16 {
	var descs []Desc
	for _, r := range readable {
		addr := q.alloc.Get(uint64(len(r)))
		if err := q.mem.WriteAt(r, addr); err != nil {
			panic(err)
		}
		descs = append(descs, Desc{Addr: addr, Len: uint32(len(r))})
	}
	for _, n := range writable {
		descs = append(descs, Desc{Addr: q.alloc.Get(uint64(n)), Len: uint32(n), Flags: FlagWrite})
	}
	return q.AddChain(descs)
}

// AddChain writes descs as consecutive descriptors linked with NEXT
// (flags other than NEXT are kept) and makes the chain available.
func (q *Queue) AddChain(descs []Desc) uint16 {
	head := q.nextDesc
	var writable []Desc
	for i, d := range descs {
		idx := q.nextDesc
		q.nextDesc = (q.nextDesc + 1) % q.Config.Size
		if i < len(descs)-1 {
			d.Flags |= FlagNext
			d.Next = q.nextDesc
		}
		q.PutDesc(idx, d)
		if d.Flags&FlagWrite != 0 {
			writable = append(writable, d)
		}
	}
	q.writable[head] = writable
	q.Publish(head)
	return head
}

// PutDesc writes descriptor idx as given, NEXT and Next included.
func (q *Queue) PutDesc(idx uint16, d Desc) { q.WriteDescAt(q.Config.Desc+16*uint64(idx), d) }

// Publish puts head on the avail ring and bumps its index.
func (q *Queue) Publish(head uint16) {
	slot := uint64(q.availIdx % q.Config.Size)
	q.put16(q.Config.Avail+4+2*slot, head)
	q.availIdx++
	q.put16(q.Config.Avail+2, q.availIdx)
}

// SetAvailIdx writes the avail index directly, for broken-ring tests.
func (q *Queue) SetAvailIdx(v uint16) { q.put16(q.Config.Avail+2, v) }

// SuppressInterrupts sets or clears VIRTQ_AVAIL_F_NO_INTERRUPT.
func (q *Queue) SuppressInterrupts(on bool) {
	var v uint16
	if on {
		v = 1
	}
	q.put16(q.Config.Avail, v)
}

func (q *Queue) put16(addr uint64, v uint16) {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	if err := q.mem.WriteAt(b[:], addr); err != nil {
		panic(err)
	}
}

func (q *Queue) get16(addr uint64) uint16 {
	var b [2]byte
	if err := q.mem.ReadAt(b[:], addr); err != nil {
		panic(err)
	}
	return binary.LittleEndian.Uint16(b[:])
}

// Used is one entry the device returned.
type Used struct {
	Head    uint16
	Written uint32
	// Data is the first Written bytes of the chain's writable buffers.
	Data []byte
}

// Next returns the next used entry, or ok=false if the device has returned
// nothing new.
func (q *Queue) Next() (Used, bool) {
	if q.get16(q.Config.Used+2) == q.lastUsed {
		return Used{}, false
	}
	slot := uint64(q.lastUsed % q.Config.Size)
	var e [8]byte
	if err := q.mem.ReadAt(e[:], q.Config.Used+4+8*slot); err != nil {
		panic(err)
	}
	q.lastUsed++
	u := Used{Head: uint16(binary.LittleEndian.Uint32(e[:])), Written: binary.LittleEndian.Uint32(e[4:])}
	left := u.Written
	for _, d := range q.writable[u.Head] {
		n := min(left, d.Len)
		buf := make([]byte, n)
		if err := q.mem.ReadAt(buf, d.Addr); err != nil {
			panic(err)
		}
		u.Data = append(u.Data, buf...)
		left -= n
	}
	delete(q.writable, u.Head)
	return u, true
}

// Wait polls for the next used entry until timeout.
func (q *Queue) Wait(t testing.TB, timeout time.Duration) Used {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if u, ok := q.Next(); ok {
			return u
		}
		if time.Now().After(deadline) {
			t.Fatalf("no used entry within %v", timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Interrupts records the signals a device raises.
type Interrupts struct {
	mu     sync.Mutex
	queue  map[int]int
	config int
	// C receives the queue index (or -1 for config) of every signal,
	// without blocking the device when nobody reads.
	C chan int
}

// NewInterrupts returns an empty recorder.
func NewInterrupts() *Interrupts {
	return &Interrupts{queue: map[int]int{}, C: make(chan int, 1024)}
}

// Queue implements virtio.Interrupter.
func (i *Interrupts) Queue(q int) error {
	i.mu.Lock()
	i.queue[q]++
	i.mu.Unlock()
	select {
	case i.C <- q:
	default:
	}
	return nil
}

// Config implements virtio.Interrupter.
func (i *Interrupts) Config() error {
	i.mu.Lock()
	i.config++
	i.mu.Unlock()
	select {
	case i.C <- -1:
	default:
	}
	return nil
}

// Count returns how many times queue q (or config, for q = -1) signalled.
func (i *Interrupts) Count(q int) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if q < 0 {
		return i.config
	}
	return i.queue[q]
}

// WriteDescAt writes a descriptor at any guest address (for indirect
// tables).
func (q *Queue) WriteDescAt(addr uint64, d Desc) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], d.Addr)
	binary.LittleEndian.PutUint32(b[8:], d.Len)
	binary.LittleEndian.PutUint16(b[12:], d.Flags)
	binary.LittleEndian.PutUint16(b[14:], d.Next)
	if err := q.mem.WriteAt(b[:], addr); err != nil {
		panic(err)
	}
}

// WriteAt copies p into guest memory at addr.
func (q *Queue) WriteAt(t testing.TB, p []byte, addr uint64) {
	t.Helper()
	if err := q.mem.WriteAt(p, addr); err != nil {
		t.Fatal(err)
	}
}

// SetUsedEvent writes used_event (VIRTIO_F_EVENT_IDX): the used index after
// which the driver wants its next interrupt.
func (q *Queue) SetUsedEvent(v uint16) { q.put16(q.Config.Avail+4+2*uint64(q.Config.Size), v) }

// AvailEvent reads avail_event, the device's hint of the next avail index
// it will read.
func (q *Queue) AvailEvent() uint16 { return q.get16(q.Config.Used + 4 + 8*uint64(q.Config.Size)) }
