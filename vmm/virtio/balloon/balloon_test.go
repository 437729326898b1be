package balloon_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/balloon"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

const (
	ramSize = 16 << 20
	// Rings and driver buffers live below ringsEnd; pages the tests report
	// lie above it.
	ringsEnd = 1 << 20
	page     = memory.PageSize
	huge     = 2 << 20
	timeout  = 5 * time.Second
	// fill is the byte RAM is filled with before a test reports pages.
	fill = 0xa5
)

// rig is guest RAM full of a pattern, the device on it and a simulated
// driver for each of its queues.
type rig struct {
	t     *testing.T
	mem   *memory.Memory
	alloc *virtiotest.Alloc
	dev   *balloon.Device
	drv   [3]*virtiotest.Queue
	irq   *virtiotest.Interrupts
}

func newRig(t *testing.T, d balloon.Discarder) *rig {
	t.Helper()
	// Before the device, so its cleanup runs after the device's Close.
	mem := virtiotest.Memory(t, ramSize)
	if d == nil {
		d = mem
	}
	dev, err := balloon.New(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Error(err)
		}
	})
	r := &rig{t: t, mem: mem, alloc: virtiotest.NewAlloc(0x1000, ringsEnd), dev: dev}
	ram, err := mem.Slice(0, ramSize)
	if err != nil {
		t.Fatal(err)
	}
	for i := ringsEnd; i < len(ram); i++ {
		ram[i] = fill
	}
	return r
}

// activate lays out fresh queues, as a driver does after a reset, and
// starts the device with the first n of them and features.
func (r *rig) activate(features uint64, n int) {
	r.t.Helper()
	if err := r.dev.Activate(r.mem, features, r.queues(features, n), r.irq); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) queues(features uint64, n int) []*virtio.Queue {
	r.t.Helper()
	r.irq = virtiotest.NewInterrupts()
	qs := make([]*virtio.Queue, n)
	for i := range n {
		r.drv[i] = virtiotest.NewQueue(r.mem, r.alloc, balloon.QueueSize)
		qs[i] = r.drv[i].Device(r.t, features|virtio.FeatureIndirectDesc)
	}
	return qs
}

// report makes a chain of device-writable ranges available on the
// reporting queue, as Linux's virtballoon_free_page_report does, and kicks.
func (r *rig) report(ranges ...virtiotest.Desc) uint16 {
	for i := range ranges {
		ranges[i].Flags |= virtiotest.FlagWrite
	}
	head := r.drv[balloon.QueueReporting].AddChain(ranges)
	r.dev.Notify(balloon.QueueReporting)
	return head
}

// used waits for the chain head to come back on queue q with an interrupt.
func (r *rig) used(q int, head uint16) {
	r.t.Helper()
	u := r.drv[q].Wait(r.t, timeout)
	if u.Head != head || u.Written != 0 {
		r.t.Fatalf("queue %d used %+v, want head %d with nothing written", q, u, head)
	}
	waitFor(r.t, func() bool { return r.irq.Count(q) > 0 }, func() string { return fmt.Sprintf("no interrupt for queue %d", q) })
}

// waitFor polls cond until it holds, and fails the test with what says
// once timeout has passed.
func waitFor(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what())
		}
	}
}

// discarded checks that exactly the pages of want read zero above
// ringsEnd, and every other byte still holds the fill.
func (r *rig) discarded(want ...virtiotest.Desc) {
	r.t.Helper()
	ram, _ := r.mem.Slice(0, ramSize)
	for p := uint64(ringsEnd); p < ramSize; p += page {
		var exp byte = fill
		for _, d := range want {
			if p >= d.Addr && p < d.Addr+uint64(d.Len) {
				exp = 0
			}
		}
		if got := ram[p : p+page]; !bytes.Equal(got, bytes.Repeat([]byte{exp}, page)) {
			r.t.Fatalf("page %#x: want every byte %#x, first is %#x", p, exp, got[0])
		}
	}
}

func span(ds []virtiotest.Desc) (n uint64) {
	for _, d := range ds {
		n += uint64(d.Len)
	}
	return n
}

func TestReportedRangesAreGivenBackAndReadZeroWhileTheRestOfRAMIsKept(t *testing.T) {
	many := make([]virtiotest.Desc, 32)
	for i := range many {
		many[i] = virtiotest.Desc{Addr: 2*huge + uint64(i)*2*page, Len: page}
	}
	tests := []struct {
		name   string
		ranges []virtiotest.Desc
	}{
		{"one 2 MiB block", []virtiotest.Desc{{Addr: 2 * huge, Len: huge}}},
		{"several blocks in one chain", []virtiotest.Desc{{Addr: huge, Len: huge}, {Addr: 4 * huge, Len: 2 * huge}, {Addr: 7 * huge, Len: huge}}},
		{"a single page", []virtiotest.Desc{{Addr: 3*huge + 5*page, Len: page}}},
		{"the most Linux puts in one report", many},
		{"the last page of RAM", []virtiotest.Desc{{Addr: ramSize - page, Len: page}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.activate(balloon.FeatureReporting|virtio.FeatureVersion1, 3)
			head := r.report(tt.ranges...)
			r.used(balloon.QueueReporting, head)
			r.discarded(tt.ranges...)
			if got, want := r.dev.Reported(), span(tt.ranges); got != want {
				t.Errorf("Reported = %d, want %d", got, want)
			}
			if n, err := r.dev.Dropped(); n != 0 || r.dev.Err() != nil {
				t.Errorf("Dropped = %d (%v), Err = %v; want nothing", n, err, r.dev.Err())
			}
		})
	}
}

func TestReportsQueuedBeforeActivateAreServed(t *testing.T) {
	r := newRig(t, nil)
	qs := r.queues(balloon.FeatureReporting, 3)
	rng := virtiotest.Desc{Addr: huge, Len: huge, Flags: virtiotest.FlagWrite}
	head := r.drv[balloon.QueueReporting].AddChain([]virtiotest.Desc{rng})
	if err := r.dev.Activate(r.mem, balloon.FeatureReporting, qs, r.irq); err != nil {
		t.Fatal(err)
	}
	r.used(balloon.QueueReporting, head)
	r.discarded(rng)
}

func TestRangesThatCannotBeGivenBackAreSkippedAndTheRestOfTheChainStillIs(t *testing.T) {
	good := virtiotest.Desc{Addr: 4 * huge, Len: huge, Flags: virtiotest.FlagWrite}
	tests := []struct {
		name string
		bad  virtiotest.Desc
		why  string
	}{
		{"address not page-aligned", virtiotest.Desc{Addr: huge + 8, Len: page, Flags: virtiotest.FlagWrite}, "not page-aligned"},
		{"length not page-aligned", virtiotest.Desc{Addr: huge, Len: page + 1, Flags: virtiotest.FlagWrite}, "not page-aligned"},
		{"past the end of RAM", virtiotest.Desc{Addr: ramSize - page, Len: 2 * page, Flags: virtiotest.FlagWrite}, "out of range"},
		{"wholly beyond RAM", virtiotest.Desc{Addr: ramSize, Len: huge, Flags: virtiotest.FlagWrite}, "out of range"},
		{"beyond 4 GiB", virtiotest.Desc{Addr: ramSize, Len: 0xffff_f000, Flags: virtiotest.FlagWrite}, "out of range"},
		{"device-readable", virtiotest.Desc{Addr: huge, Len: huge}, "device-readable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.activate(balloon.FeatureReporting, 3)
			// A readable buffer must come first in a chain.
			chain := []virtiotest.Desc{tt.bad, good}
			if tt.bad.Flags&virtiotest.FlagWrite != 0 {
				chain = []virtiotest.Desc{good, tt.bad}
			}
			head := r.drv[balloon.QueueReporting].AddChain(chain)
			r.dev.Notify(balloon.QueueReporting)
			r.used(balloon.QueueReporting, head)
			r.discarded(good)
			if got := r.dev.Reported(); got != uint64(good.Len) {
				t.Errorf("Reported = %d, want %d", got, good.Len)
			}
			n, last := r.dev.Dropped()
			if n != 1 || last == nil || !strings.Contains(last.Error(), tt.why) {
				t.Errorf("Dropped = %d, %v; want 1 saying %q", n, last, tt.why)
			}
			if err := r.dev.Err(); err != nil {
				t.Errorf("Err = %v: a skipped range must not stop the device", err)
			}
		})
	}
}

func TestInflateAndDeflateBuffersComeBackUntouched(t *testing.T) {
	for _, q := range []int{balloon.QueueInflate, balloon.QueueDeflate} {
		t.Run([]string{"inflate", "deflate"}[q], func(t *testing.T) {
			r := newRig(t, nil)
			r.activate(balloon.FeatureReporting, 3)
			// Page numbers of pages that hold the fill.
			pfns := make([]byte, 4*256)
			for i := range 256 {
				binary.LittleEndian.PutUint32(pfns[4*i:], uint32(ringsEnd/page+i))
			}
			head := r.drv[q].Add([][]byte{pfns}, nil)
			r.dev.Notify(q)
			r.used(q, head)
			r.discarded()
			if r.dev.Reported() != 0 {
				t.Errorf("Reported = %d, want 0", r.dev.Reported())
			}
		})
	}
}

func TestConfigReadsNumPagesZeroAndStoresActual(t *testing.T) {
	u32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	tests := []struct {
		name   string
		writes []struct {
			off  uint64
			data []byte
		}
		want []byte // config bytes 0 to 16
	}{
		{"fresh device reads all zeros", nil, make([]byte, 16)},
		{"actual is stored", []struct {
			off  uint64
			data []byte
		}{{4, u32(0x01020304)}}, append(append(make([]byte, 4), u32(0x01020304)...), make([]byte, 8)...)},
		{"one byte of actual", []struct {
			off  uint64
			data []byte
		}{{4, u32(7)}, {6, []byte{9}}}, append(append(make([]byte, 4), 7, 0, 9, 0), make([]byte, 8)...)},
		{"num_pages and the fields after actual ignore writes", []struct {
			off  uint64
			data []byte
		}{{0, u32(100)}, {8, u32(5)}, {12, u32(0xaa)}}, make([]byte, 16)},
		{"a write spanning num_pages and actual keeps only actual's bytes", []struct {
			off  uint64
			data []byte
		}{{0, append(u32(100), u32(3)...)}}, append(append(make([]byte, 4), u32(3)...), make([]byte, 8)...)},
		{"a write running past actual is ignored", []struct {
			off  uint64
			data []byte
		}{{4, append(u32(3), u32(4)...)}}, make([]byte, 16)},
		{"a write at a wrapping offset is ignored", []struct {
			off  uint64
			data []byte
		}{{^uint64(0) - 1, u32(3)}}, make([]byte, 16)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			for _, w := range tt.writes {
				r.dev.WriteConfig(w.off, w.data)
			}
			got := make([]byte, 16)
			r.dev.ReadConfig(0, got)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("config = % x, want % x", got, tt.want)
			}
			for off := range uint64(16) {
				b := []byte{0xff}
				r.dev.ReadConfig(off, b)
				if b[0] != tt.want[off] {
					t.Fatalf("byte %d reads %#x, want %#x", off, b[0], tt.want[off])
				}
			}
		})
	}
}

func TestResetEmptiesTheBalloonSoActualReadsZero(t *testing.T) {
	r := newRig(t, nil)
	r.activate(balloon.FeatureReporting, 3)
	r.dev.WriteConfig(4, []byte{1, 0, 0, 0})
	r.dev.Reset()
	b := make([]byte, 4)
	if r.dev.ReadConfig(4, b); !bytes.Equal(b, make([]byte, 4)) {
		t.Fatalf("actual after reset = % x, want 0", b)
	}
}

func TestDriverWithoutReportingRunsOnTwoQueues(t *testing.T) {
	tests := []struct {
		name     string
		features uint64
		n        int
		third    bool // leave queue 2 laid out but disabled (nil)
	}{
		{"two queues given", 0, 2, false},
		{"third queue disabled", 0, 3, true},
		{"reporting accepted but its queue disabled", balloon.FeatureReporting, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			qs := r.queues(tt.features, tt.n)
			if tt.third {
				qs[2] = nil
			}
			if err := r.dev.Activate(r.mem, tt.features, qs, r.irq); err != nil {
				t.Fatal(err)
			}
			for q := range 2 {
				head := r.drv[q].Add([][]byte{make([]byte, 4)}, nil)
				r.dev.Notify(q)
				r.used(q, head)
			}
			r.dev.Notify(balloon.QueueReporting)
			r.dev.Notify(7)
			if err := r.dev.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReportingQueueIsIgnoredWhenTheDriverDidNotAcceptTheFeature(t *testing.T) {
	r := newRig(t, nil)
	r.activate(0, 3)
	r.report(virtiotest.Desc{Addr: huge, Len: huge})
	// Once the deflate chain is back the worker has drained; the report
	// must still be on the ring, untouched.
	head := r.drv[balloon.QueueDeflate].Add([][]byte{make([]byte, 4)}, nil)
	r.dev.Notify(balloon.QueueDeflate)
	r.used(balloon.QueueDeflate, head)
	if _, ok := r.drv[balloon.QueueReporting].Next(); ok || r.dev.Reported() != 0 {
		t.Fatalf("reporting queue served without FeatureReporting (reported %d)", r.dev.Reported())
	}
	r.discarded()
}

func TestActivateRefusesMissingInflateOrDeflateQueue(t *testing.T) {
	tests := []struct {
		name string
		keep []bool
	}{
		{"no queues", nil},
		{"inflate only", []bool{true}},
		{"inflate disabled", []bool{false, true, true}},
		{"deflate disabled", []bool{true, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			qs := r.queues(balloon.FeatureReporting, len(tt.keep))
			for i, k := range tt.keep {
				if !k {
					qs[i] = nil
				}
			}
			if err := r.dev.Activate(r.mem, balloon.FeatureReporting, qs, r.irq); err == nil {
				t.Fatal("Activate succeeded")
			}
			// The device stays inactive and can still be activated.
			r.activate(balloon.FeatureReporting, 3)
		})
	}
}

func TestBrokenRingStopsTheDeviceUntilReset(t *testing.T) {
	r := newRig(t, nil)
	r.activate(balloon.FeatureReporting, 3)
	r.drv[balloon.QueueReporting].SetAvailIdx(1000)
	r.dev.Notify(balloon.QueueReporting)
	waitFor(t, func() bool { return r.dev.Err() != nil }, func() string { return "no error after a broken ring" })
	if err := r.dev.Err(); !errors.Is(err, virtio.ErrBadChain) {
		t.Fatalf("Err = %v, want ErrBadChain", err)
	}
	r.dev.Reset()
	if err := r.dev.Err(); err != nil {
		t.Fatalf("Err after reset = %v", err)
	}
	r.activate(balloon.FeatureReporting, 3)
	rng := virtiotest.Desc{Addr: huge, Len: huge}
	r.used(balloon.QueueReporting, r.report(rng))
	r.discarded(rng)
}

// gate is a Discarder that blocks each call until released.
type gate struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	calls   int
}

func (g *gate) Discard(addr, n uint64) error {
	g.entered <- struct{}{}
	<-g.release
	g.mu.Lock()
	g.calls++
	g.mu.Unlock()
	return nil
}

func TestResetWaitsForTheDiscardInProgress(t *testing.T) {
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	r := newRig(t, g)
	var once sync.Once
	open := func() { once.Do(func() { close(g.release) }) }
	// Runs before the device's Close, should the test fail half way.
	t.Cleanup(open)
	r.activate(balloon.FeatureReporting, 3)
	r.report(virtiotest.Desc{Addr: huge, Len: huge})
	select {
	case <-g.entered:
	case <-time.After(timeout):
		t.Fatal("the report was not discarded")
	}
	reset := make(chan struct{})
	go func() {
		r.dev.Reset()
		close(reset)
	}()
	select {
	case <-reset:
		t.Fatal("Reset returned while a discard was in progress")
	case <-time.After(20 * time.Millisecond):
	}
	open()
	select {
	case <-reset:
	case <-time.After(timeout):
		t.Fatal("Reset did not return after the discard finished")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.calls != 1 {
		t.Fatalf("%d discards, want 1", g.calls)
	}
}

func TestResetAndCloseLeaveNoGoroutinesBehind(t *testing.T) {
	before := runtime.NumGoroutine()
	r := newRig(t, nil)
	for range 3 {
		r.activate(balloon.FeatureReporting, 3)
		rng := virtiotest.Desc{Addr: huge, Len: huge}
		r.used(balloon.QueueReporting, r.report(rng))
		r.dev.Reset()
	}
	r.activate(balloon.FeatureReporting, 3)
	if err := r.dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.Activate(r.mem, balloon.FeatureReporting, r.queues(balloon.FeatureReporting, 3), r.irq); !errors.Is(err, virtio.ErrClosed) {
		t.Fatalf("Activate after Close = %v, want ErrClosed", err)
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before }, func() string {
		buf := make([]byte, 1<<20)
		return fmt.Sprintf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	})
}

func TestDeviceOffersOnlyReportingOnThreeQueues(t *testing.T) {
	r := newRig(t, nil)
	if got := r.dev.Type(); got != virtio.TypeBalloon || got.String() != "balloon" {
		t.Errorf("Type = %v (%d), want balloon (5)", got, got)
	}
	if got := r.dev.Features(); got != 1<<5 {
		t.Errorf("Features = %#x, want only VIRTIO_BALLOON_F_REPORTING (bit 5)", got)
	}
	sizes := r.dev.QueueSizes()
	if len(sizes) != 3 {
		t.Fatalf("QueueSizes = %v, want inflateq, deflateq, reporting_vq", sizes)
	}
	for i, s := range sizes {
		// Linux refuses a reporting queue below PAGE_REPORTING_CAPACITY.
		if s < 32 || s&(s-1) != 0 {
			t.Errorf("queue %d size %d: want a power of 2 of at least 32", i, s)
		}
	}
	if _, err := balloon.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}
