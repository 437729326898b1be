package rng

import (
	"bytes"
	"testing"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

const ramSize = 8 << 20

type guest struct {
	dev   *Device
	mem   *memory.Memory
	alloc *virtiotest.Alloc
	drv   *virtiotest.Queue
	irq   *virtiotest.Interrupts
}

// start activates a fresh device with one driver queue.
func start(t *testing.T) *guest {
	t.Helper()
	g := &guest{dev: New(), mem: virtiotest.Memory(t, ramSize), alloc: virtiotest.NewAlloc(0x1000, ramSize)}
	g.activate(t)
	return g
}

// activate lays out a new request queue, as a driver does after a reset.
func (g *guest) activate(t *testing.T) {
	t.Helper()
	g.irq = virtiotest.NewInterrupts()
	g.drv = virtiotest.NewQueue(g.mem, g.alloc, g.dev.QueueSizes()[0])
	if err := g.dev.Activate(g.mem, virtio.FeatureVersion1, []*virtio.Queue{g.drv.Device(t, 0)}, g.irq); err != nil {
		t.Fatal(err)
	}
}

func (g *guest) used(t *testing.T) virtiotest.Used {
	t.Helper()
	u, ok := g.drv.Next()
	if !ok {
		t.Fatal("request not returned after the kick")
	}
	return u
}

func TestRequestsAreFilledWithDistinctRandomBytes(t *testing.T) {
	g := start(t)
	g.drv.Add(nil, []int{64})
	g.drv.Add(nil, []int{16, 48}) // split over two buffers
	g.dev.Notify(0)
	a, b := g.used(t), g.used(t)
	for _, u := range []virtiotest.Used{a, b} {
		if u.Written != 64 || len(u.Data) != 64 {
			t.Fatalf("written %d (data %d), want 64", u.Written, len(u.Data))
		}
		if bytes.Equal(u.Data, make([]byte, 64)) {
			t.Fatal("request filled with zeros")
		}
	}
	if bytes.Equal(a.Data, b.Data) {
		t.Fatal("two requests got the same bytes")
	}
	if g.irq.Count(0) == 0 {
		t.Fatal("no interrupt though the driver did not suppress them")
	}
}

func TestHugeRequestIsFilledOnlyUpToTheCap(t *testing.T) {
	g := start(t)
	g.drv.Add(nil, []int{maxFill / 2, maxFill})
	g.dev.Notify(0)
	if u := g.used(t); u.Written != maxFill {
		t.Fatalf("written %d, want the cap %d", u.Written, maxFill)
	}
}

func TestReadableOnlyChainIsReturnedWithNothingWritten(t *testing.T) {
	g := start(t)
	g.drv.Add([][]byte{[]byte("not a request")}, nil)
	g.dev.Notify(0)
	if u := g.used(t); u.Written != 0 {
		t.Fatalf("written %d, want 0", u.Written)
	}
}

func TestSuppressedInterruptsAreNotRaised(t *testing.T) {
	g := start(t)
	g.drv.SuppressInterrupts(true)
	g.drv.Add(nil, []int{8})
	g.dev.Notify(0)
	g.used(t)
	if n := g.irq.Count(0); n != 0 {
		t.Fatalf("%d interrupts though the driver suppressed them", n)
	}
}

func TestRequestsQueuedBeforeActivateAreServed(t *testing.T) {
	mem := virtiotest.Memory(t, ramSize)
	alloc := virtiotest.NewAlloc(0x1000, ramSize)
	dev := New()
	drv := virtiotest.NewQueue(mem, alloc, dev.QueueSizes()[0])
	drv.Add(nil, []int{32})
	if err := dev.Activate(mem, 0, []*virtio.Queue{drv.Device(t, 0)}, virtiotest.NewInterrupts()); err != nil {
		t.Fatal(err)
	}
	if u, ok := drv.Next(); !ok || u.Written != 32 {
		t.Fatalf("used %+v %v, want 32 bytes written", u, ok)
	}
}

func TestBadChainsStopTheQueueWithoutPanicking(t *testing.T) {
	tests := []struct {
		name  string
		build func(q *virtiotest.Queue)
	}{
		{"buffer beyond RAM", func(q *virtiotest.Queue) {
			q.AddChain([]virtiotest.Desc{{Addr: ramSize - 8, Len: 64, Flags: virtiotest.FlagWrite}})
		}},
		{"descriptor loop", func(q *virtiotest.Queue) {
			q.PutDesc(0, virtiotest.Desc{Addr: 0x1000, Len: 8, Flags: virtiotest.FlagWrite | virtiotest.FlagNext, Next: 0})
			q.Publish(0)
		}},
		{"avail index far ahead", func(q *virtiotest.Queue) { q.SetAvailIdx(1000) }},
		{"indirect without the feature", func(q *virtiotest.Queue) {
			q.AddChain([]virtiotest.Desc{{Addr: 0x1000, Len: 16, Flags: virtiotest.FlagIndirect}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := start(t)
			tt.build(g.drv)
			g.dev.Notify(0)
			g.dev.Notify(0) // a second kick after the failure must not touch the ring again
			if u, ok := g.drv.Next(); ok {
				t.Fatalf("bad chain returned: %+v", u)
			}
		})
	}
}

func TestResetStopsServingUntilActivatedAgain(t *testing.T) {
	g := start(t)
	g.dev.Reset()
	g.drv.Add(nil, []int{16})
	g.dev.Notify(0)
	if u, ok := g.drv.Next(); ok {
		t.Fatalf("reset device served a request: %+v", u)
	}
	// Out of range kicks are ignored as well.
	g.dev.Notify(1)
	g.dev.Notify(-1)

	old := g.drv
	g.activate(t)
	g.drv.Add(nil, []int{16})
	g.dev.Notify(0)
	if u, ok := old.Next(); ok {
		t.Fatalf("request on the queue from before the reset served: %+v", u)
	}
	if u := g.used(t); u.Written != 16 {
		t.Fatalf("written %d after re-activation, want 16", u.Written)
	}
}

func TestDeviceHasOneQueueAndNoConfig(t *testing.T) {
	d := New()
	if d.Type() != virtio.TypeRNG || d.Features() != 0 {
		t.Fatalf("type %v features %#x", d.Type(), d.Features())
	}
	if s := d.QueueSizes(); len(s) != 1 || s[0]&(s[0]-1) != 0 {
		t.Fatalf("queue sizes %v, want one power of 2", s)
	}
	buf := []byte{1, 2, 3, 4}
	d.WriteConfig(0, buf)
	d.ReadConfig(0, buf)
	if !bytes.Equal(buf, make([]byte, 4)) {
		t.Fatalf("config reads %v, want zeros", buf)
	}
	if err := d.Activate(nil, 0, nil, nil); err == nil {
		t.Fatal("Activate without the request queue succeeded")
	}
}
