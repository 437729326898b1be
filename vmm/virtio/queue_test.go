package virtio_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

const ramSize = 1 << 20

func setup(t *testing.T, features uint64) (*virtiotest.Queue, *virtio.Queue, *virtiotest.Alloc) {
	t.Helper()
	mem := virtiotest.Memory(t, ramSize)
	alloc := virtiotest.NewAlloc(0x1000, ramSize)
	dq := virtiotest.NewQueue(mem, alloc, 8)
	return dq, dq.Device(t, features), alloc
}

func TestChainCarriesReadableThenWritableBuffersAndReturnsWrittenBytes(t *testing.T) {
	drv, q, _ := setup(t, 0)
	head := drv.Add([][]byte{[]byte("hello "), []byte("world")}, []int{4, 8})
	c, ok, err := q.Pop()
	if err != nil || !ok {
		t.Fatalf("Pop = %v, %v", ok, err)
	}
	if c.Head != head || string(c.Read()) != "hello world" || c.WritableLen() != 12 {
		t.Fatalf("chain head %d read %q writable %d", c.Head, c.Read(), c.WritableLen())
	}
	n := c.Write([]byte("0123456789abcdef"))
	if n != 12 {
		t.Fatalf("Write = %d, want 12 (what fits)", n)
	}
	if !q.Push(c.Head, uint32(n)) {
		t.Fatal("Push says no interrupt though the driver did not suppress them")
	}
	u, ok := drv.Next()
	if !ok || u.Head != head || u.Written != 12 || string(u.Data) != "0123456789ab" {
		t.Fatalf("used = %+v %v", u, ok)
	}
	if _, ok, _ := q.Pop(); ok || q.Pending() {
		t.Fatal("empty ring still gives chains")
	}
}

func TestBadChainsAreRefusedWithoutTouchingMemoryOutsideRAM(t *testing.T) {
	tests := []struct {
		name     string
		features uint64
		build    func(drv *virtiotest.Queue, alloc *virtiotest.Alloc)
	}{
		{"buffer beyond RAM", 0, func(drv *virtiotest.Queue, _ *virtiotest.Alloc) {
			drv.AddChain([]virtiotest.Desc{{Addr: ramSize - 8, Len: 16}})
		}},
		{"address wraps", 0, func(drv *virtiotest.Queue, _ *virtiotest.Alloc) {
			drv.AddChain([]virtiotest.Desc{{Addr: ^uint64(0) - 4, Len: 16}})
		}},
		{"loop", 0, func(drv *virtiotest.Queue, alloc *virtiotest.Alloc) {
			a := alloc.Get(16)
			drv.PutDesc(0, virtiotest.Desc{Addr: a, Len: 16, Flags: virtiotest.FlagNext, Next: 1})
			drv.PutDesc(1, virtiotest.Desc{Addr: a, Len: 16, Flags: virtiotest.FlagNext, Next: 0})
			drv.Publish(0)
		}},
		{"next outside table", 0, func(drv *virtiotest.Queue, alloc *virtiotest.Alloc) {
			drv.PutDesc(0, virtiotest.Desc{Addr: alloc.Get(16), Len: 16, Flags: virtiotest.FlagNext, Next: 200})
			drv.Publish(0)
		}},
		{"head outside table", 0, func(drv *virtiotest.Queue, _ *virtiotest.Alloc) {
			drv.Publish(9)
		}},
		{"readable after writable", 0, func(drv *virtiotest.Queue, alloc *virtiotest.Alloc) {
			drv.AddChain([]virtiotest.Desc{{Addr: alloc.Get(8), Len: 8, Flags: virtiotest.FlagWrite}, {Addr: alloc.Get(8), Len: 8}})
		}},
		{"indirect not negotiated", 0, func(drv *virtiotest.Queue, alloc *virtiotest.Alloc) {
			drv.AddChain([]virtiotest.Desc{{Addr: alloc.Get(16), Len: 16, Flags: virtiotest.FlagIndirect}})
		}},
		{"indirect table of odd size", virtio.FeatureIndirectDesc, func(drv *virtiotest.Queue, alloc *virtiotest.Alloc) {
			drv.AddChain([]virtiotest.Desc{{Addr: alloc.Get(24), Len: 24, Flags: virtiotest.FlagIndirect}})
		}},
		{"nested indirect", virtio.FeatureIndirectDesc, func(drv *virtiotest.Queue, alloc *virtiotest.Alloc) {
			table := alloc.Get(16)
			indirect := indirectTable(t, drv, table, []virtiotest.Desc{{Addr: table, Len: 16, Flags: virtiotest.FlagIndirect}})
			drv.AddChain([]virtiotest.Desc{indirect})
		}},
		{"indirect loop", virtio.FeatureIndirectDesc, func(drv *virtiotest.Queue, alloc *virtiotest.Alloc) {
			table, buf := alloc.Get(32), alloc.Get(8)
			indirect := indirectTable(t, drv, table, []virtiotest.Desc{
				{Addr: buf, Len: 8, Flags: virtiotest.FlagNext, Next: 1},
				{Addr: buf, Len: 8, Flags: virtiotest.FlagNext, Next: 0},
			})
			drv.AddChain([]virtiotest.Desc{indirect})
		}},
		{"avail index far ahead", 0, func(drv *virtiotest.Queue, _ *virtiotest.Alloc) {
			drv.SetAvailIdx(100)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			drv, q, alloc := setup(t, tc.features)
			tc.build(drv, alloc)
			_, ok, err := q.Pop()
			if ok || !errors.Is(err, virtio.ErrBadChain) {
				t.Fatalf("Pop = %v, %v; want ErrBadChain", ok, err)
			}
		})
	}
}

// indirectTable writes descs as an indirect table at addr and returns the
// descriptor pointing at it. The test memory is the queue's.
func indirectTable(t *testing.T, drv *virtiotest.Queue, addr uint64, descs []virtiotest.Desc) virtiotest.Desc {
	t.Helper()
	for i, d := range descs {
		drv.WriteDescAt(addr+16*uint64(i), d)
	}
	return virtiotest.Desc{Addr: addr, Len: uint32(16 * len(descs)), Flags: virtiotest.FlagIndirect}
}

func TestIndirectChainIsWalkedWhenNegotiated(t *testing.T) {
	drv, q, alloc := setup(t, virtio.FeatureIndirectDesc)
	in, out := alloc.Get(5), alloc.Get(3)
	drv.WriteAt(t, []byte("abcde"), in)
	table := alloc.Get(32)
	drv.AddChain([]virtiotest.Desc{indirectTable(t, drv, table, []virtiotest.Desc{
		{Addr: in, Len: 5, Flags: virtiotest.FlagNext, Next: 1},
		{Addr: out, Len: 3, Flags: virtiotest.FlagWrite},
	})})
	c, ok, err := q.Pop()
	if err != nil || !ok {
		t.Fatalf("Pop = %v, %v", ok, err)
	}
	if !bytes.Equal(c.Read(), []byte("abcde")) || c.WritableLen() != 3 {
		t.Fatalf("read %q writable %d", c.Read(), c.WritableLen())
	}
}

func TestPushHonoursTheDriversInterruptSuppression(t *testing.T) {
	drv, q, _ := setup(t, 0)
	drv.SuppressInterrupts(true)
	drv.Add(nil, []int{1})
	c, _, _ := q.Pop()
	if q.Push(c.Head, 0) {
		t.Fatal("Push asks for an interrupt the driver suppressed")
	}
}

func TestEventIdxInterruptsOnlyWhenUsedEventIsPassed(t *testing.T) {
	drv, q, _ := setup(t, virtio.FeatureEventIdx)
	// used_event = 1: the driver wants an interrupt once entry 1 is used,
	// not for entry 0.
	drv.SetUsedEvent(1)
	for i := range 3 {
		drv.Add(nil, []int{1})
		c, ok, err := q.Pop()
		if !ok || err != nil {
			t.Fatal(ok, err)
		}
		got := q.Push(c.Head, 0)
		if want := i == 1; got != want {
			t.Fatalf("push %d: notify = %v, want %v", i, got, want)
		}
	}
	if got := drv.AvailEvent(); got != 3 {
		t.Fatalf("avail_event = %d, want 3 (the next index the device reads)", got)
	}
}

func TestNewQueueRefusesRingsOutsideRAMOrMisaligned(t *testing.T) {
	mem := virtiotest.Memory(t, ramSize)
	for _, cfg := range []virtio.QueueConfig{
		{Size: 8, Desc: ramSize - 64, Avail: 0x2000, Used: 0x3000},
		{Size: 8, Desc: 0x1000, Avail: 0x2000, Used: ramSize - 8},
		{Size: 6, Desc: 0x1000, Avail: 0x2000, Used: 0x3000},
		{Size: 8, Desc: 0x1008, Avail: 0x2000, Used: 0x3000},
		{Size: 8, Desc: 0x1000, Avail: 0x2001, Used: 0x3000},
		{Size: 8, Desc: 0x1000, Avail: 0x2000, Used: 0x3002},
	} {
		if _, err := virtio.NewQueue(mem, cfg, 0); err == nil {
			t.Errorf("NewQueue(%+v) accepted", cfg)
		}
	}
}
