package virtiopci_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/pci"
	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/virtiopci"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

const (
	windowBase = 0xc000_0000
	windowSize = 0xfec0_0000 - windowBase
	ramSize    = 4 << 20
	timeout    = 5 * time.Second
	// echoFeature is the one device-specific feature the echo device offers.
	echoFeature = 1 << 3
)

// echo is a virtio device that copies each chain's readable bytes into its
// writable buffers when its queue is kicked.
type echo struct {
	typ   virtio.DeviceType
	sizes []uint16
	// activateErr, if set, makes Activate fail.
	activateErr error

	mu       sync.Mutex
	cfg      [8]byte
	queues   []*virtio.Queue
	irq      virtio.Interrupter
	features uint64
	notified map[int]int
	resets   int
	// err is the first thing that went wrong inside the device.
	err error
}

func newEcho(sizes ...uint16) *echo {
	return &echo{typ: virtio.TypeRNG, sizes: sizes, notified: map[int]int{}}
}

func (e *echo) Type() virtio.DeviceType { return e.typ }
func (e *echo) Features() uint64        { return echoFeature }
func (e *echo) QueueSizes() []uint16    { return e.sizes }

func (e *echo) ReadConfig(off uint64, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range data {
		if off+uint64(i) < uint64(len(e.cfg)) {
			data[i] = e.cfg[off+uint64(i)]
		}
	}
}

func (e *echo) WriteConfig(off uint64, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, v := range data {
		if off+uint64(i) < uint64(len(e.cfg)) {
			e.cfg[off+uint64(i)] = v
		}
	}
}

func (e *echo) Activate(_ *memory.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupter) error {
	if e.activateErr != nil {
		return e.activateErr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.queues, e.irq, e.features = queues, irq, features
	return nil
}

func (e *echo) Notify(q int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notified[q]++
	if q >= len(e.queues) || e.queues[q] == nil {
		return
	}
	vq, signal := e.queues[q], false
	for {
		c, ok, err := vq.Pop()
		if err != nil {
			e.fail(err)
			return
		}
		if !ok {
			break
		}
		n := c.Write(c.Read())
		signal = vq.Push(c.Head, uint32(n)) || signal
	}
	if signal {
		e.fail(e.irq.Queue(q))
	}
}

func (e *echo) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.queues, e.features = nil, 0
	e.resets++
}

// changeConfig changes the device configuration and tells the driver,
// through irq (the current one unless given).
func (e *echo) changeConfig(b byte) error {
	e.mu.Lock()
	e.cfg[0] = b
	irq := e.irq
	e.mu.Unlock()
	return irq.Config()
}

func (e *echo) fail(err error) {
	if err != nil && e.err == nil {
		e.err = err
	}
}

func (e *echo) state() (queues []*virtio.Queue, features uint64, resets int, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.queues, e.features, e.resets, e.err
}

func (e *echo) notifies(q int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.notified[q]
}

// rig is one transport on a bus with guest RAM and an MSI recorder.
type rig struct {
	t     *testing.T
	bus   *pci.Bus
	mem   *memory.Memory
	alloc *virtiotest.Alloc
	msi   *virtiotest.MSIRecorder
	dev   *echo
	tr    *virtiopci.Transport
	slot  int
}

func newRig(t *testing.T, dev *echo) *rig { return newRigWith(t, dev, nil) }

// newRigWith is newRig with queue kicks through ioeventfds reg registers
// (none when reg is nil).
func newRigWith(t *testing.T, dev *echo, reg virtiopci.EventRegistrar) *rig {
	t.Helper()
	bus, err := pci.NewBus(windowBase, windowSize)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, bus: bus, mem: virtiotest.Memory(t, ramSize), alloc: virtiotest.NewAlloc(0x1000, ramSize), msi: virtiotest.NewMSIRecorder(), dev: dev}
	if r.tr, err = virtiopci.New(dev, r.mem, r.msi); err != nil {
		t.Fatal(err)
	}
	if reg != nil {
		if err := r.tr.UseIOEventFDs(reg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.tr.Close() })
	}
	if r.slot, err = bus.Add(r.tr); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) attach() *virtiotest.PCIDriver {
	return virtiotest.Attach(r.t, r.bus, windowBase, r.slot, r.mem, r.alloc)
}

// probe brings the device up with every feature but EVENT_IDX: the test
// driver's queues never move used_event, so with it the device would
// rightly interrupt only once.
func (r *rig) probe() *virtiotest.PCIDriver {
	return virtiotest.Probe(r.t, r.bus, windowBase, r.slot, r.mem, r.alloc, ^virtio.FeatureEventIdx)
}

// echoOnce sends msg through queue q and returns what came back.
func echoOnce(t *testing.T, d *virtiotest.PCIDriver, q int, msg string) virtiotest.Used {
	t.Helper()
	d.Queue(q).Add([][]byte{[]byte(msg)}, []int{len(msg)})
	d.Notify(q)
	u := d.Queue(q).Wait(t, timeout)
	if string(u.Data) != msg {
		t.Fatalf("queue %d echoed %q, want %q", q, u.Data, msg)
	}
	return u
}

func TestConf1EnumerationShowsTheVirtioIdentityOfEachDeviceType(t *testing.T) {
	tests := []struct {
		typ   virtio.DeviceType
		class uint32
	}{
		{virtio.TypeNet, 0x020000},
		{virtio.TypeBlock, 0x010000},
		{virtio.TypeConsole, 0x078000},
		{virtio.TypeRNG, 0xff0000},
		{virtio.Type9P, 0xff0000},
	}
	for _, tt := range tests {
		t.Run(tt.typ.String(), func(t *testing.T) {
			dev := newEcho(64)
			dev.typ = tt.typ
			d := newRig(t, dev).attach()
			if got, want := d.ConfigRead(pci.RegVendorID, 4), uint32(0x1040+tt.typ)<<16|0x1af4; got != want {
				t.Errorf("vendor/device %#x, want %#x", got, want)
			}
			if got, want := d.ConfigRead(pci.RegRevision, 4), tt.class<<8|1; got != want {
				t.Errorf("class/revision %#x, want %#x", got, want)
			}
			if got := d.ConfigRead(pci.RegSubsystemVID, 4); got != 0x1100<<16|0x1af4 {
				t.Errorf("subsystem %#x", got)
			}
			if got := d.ConfigRead(pci.RegInterruptPin, 1); got != 0 {
				t.Errorf("interrupt pin %d, want none", got)
			}
		})
	}
}

func TestCapabilityChainLocatesEveryStructureInsideTheBAR(t *testing.T) {
	r := newRig(t, newEcho(64, 32, 16))
	d := r.attach()
	l := d.Layout()
	bar := l.BARs[virtiopci.BAR]
	mask := uint64(d.ConfigRead(pci.RegBAR0, 4)) // sized by Attach and restored
	if mask&0x6 != 0x4 {
		t.Fatalf("BAR 0 is not a 64-bit memory BAR: %#x", mask)
	}
	d.ConfigWrite(pci.RegCommand, 2, 0)
	d.ConfigWrite(pci.RegBAR0, 4, 0xffff_ffff)
	size := uint64(^(d.ConfigRead(pci.RegBAR0, 4) &^ 0xf) + 1)
	d.ConfigWrite(pci.RegBAR0, 4, uint32(bar))
	d.ConfigWrite(pci.RegCommand, 2, pci.CommandMemory|pci.CommandBusMaster)
	if size < 16<<10 {
		t.Errorf("BAR 0 is %#x bytes, want at least 16 KiB", size)
	}
	regions := []struct {
		name string
		addr uint64
		len  uint64
		min  uint64
	}{
		{"common", l.Common, uint64(l.CommonLen), 0x38},
		{"ISR", l.ISR, uint64(l.ISRLen), 1},
		{"device", l.Device, uint64(l.DeviceLen), 8},
		{"notify", l.Notify, uint64(l.NotifyLen), 3*4 - 2},
		{"MSI-X table", l.MSIXTable, uint64(l.MSIXVectors) * 16, 4 * 16},
		{"MSI-X PBA", l.MSIXPBA, 8, 8},
	}
	for i, a := range regions {
		if a.len < a.min {
			t.Errorf("%s is %d bytes, want at least %d", a.name, a.len, a.min)
		}
		if a.addr < bar || a.addr+a.len > bar+size {
			t.Errorf("%s [%#x, +%#x) is outside BAR 0 [%#x, +%#x)", a.name, a.addr, a.len, bar, size)
		}
		for _, b := range regions[:i] {
			if a.addr < b.addr+b.len && b.addr < a.addr+a.len {
				t.Errorf("%s overlaps %s", a.name, b.name)
			}
		}
	}
	if l.NotifyMultiplier != 4 {
		t.Errorf("notify_off_multiplier %d, want 4", l.NotifyMultiplier)
	}
	if l.MSIXVectors != 4 {
		t.Errorf("%d MSI-X vectors, want queues + 1 = 4", l.MSIXVectors)
	}
}

func TestDeviceOffersItsFeaturesWithVersion1AndTheRingFeatures(t *testing.T) {
	d := newRig(t, newEcho(64)).attach()
	want := echoFeature | virtio.FeatureVersion1 | virtio.FeatureIndirectDesc | virtio.FeatureEventIdx
	if got := d.DeviceFeatures(); got != want {
		t.Fatalf("device features %#x, want %#x", got, want)
	}
}

func TestFeaturesOKOnlySticksForVersion1AndOfferedBits(t *testing.T) {
	offered := echoFeature | virtio.FeatureVersion1 | virtio.FeatureIndirectDesc | virtio.FeatureEventIdx
	tests := []struct {
		name     string
		features uint64
		ok       bool
	}{
		{"everything offered", offered, true},
		{"VERSION_1 alone", virtio.FeatureVersion1, true},
		{"without VERSION_1", offered &^ virtio.FeatureVersion1, false},
		{"nothing", 0, false},
		{"an unoffered device bit", virtio.FeatureVersion1 | 1<<5, false},
		{"ACCESS_PLATFORM, not offered", virtio.FeatureVersion1 | virtio.FeatureAccessPlat, false},
		{"a high unoffered bit", virtio.FeatureVersion1 | 1<<63, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, newEcho(64))
			d := r.attach()
			if got := d.Negotiate(tt.features); got != tt.ok {
				t.Fatalf("FEATURES_OK stuck = %v, want %v (status %#x)", got, tt.ok, d.Status())
			}
			if tt.ok {
				return
			}
			// A driver going on regardless gets no device.
			d.SetupQueues(0)
			d.DriverOK()
			if d.Status()&virtio.StatusDeviceNeedsReset == 0 {
				t.Fatalf("status %#x after DRIVER_OK without FEATURES_OK", d.Status())
			}
			if q, _, _, _ := r.dev.state(); q != nil {
				t.Fatal("device activated without accepted features")
			}
		})
	}
}

func TestDriverFeaturesAreFrozenOnceFeaturesOKIsSet(t *testing.T) {
	r := newRig(t, newEcho(64))
	d := r.probe()
	c := d.Layout().Common
	d.WriteMMIO(c+0x08, 4, 0)
	d.WriteMMIO(c+0x0c, 4, 0)
	if got := d.ReadMMIO(c+0x0c, 4); got != d.Features()&0xffff_ffff {
		t.Fatalf("driver_feature changed to %#x after FEATURES_OK", got)
	}
	if _, f, _, _ := r.dev.state(); f != d.Features() {
		t.Fatalf("device runs with %#x, driver negotiated %#x", f, d.Features())
	}
}

func TestQueuesAreBuiltWithTheSizesTheDriverChose(t *testing.T) {
	tests := []struct {
		name    string
		maxSize uint16
		want    []uint16
	}{
		{"as offered", 0, []uint16{256, 64}},
		{"lowered by the driver", 16, []uint16{16, 16}},
		{"lowered below one queue only", 128, []uint16{128, 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, newEcho(256, 64))
			d := r.attach()
			if !d.Negotiate(virtio.FeatureVersion1) {
				t.Fatal("features refused")
			}
			d.SetupQueues(tt.maxSize)
			d.DriverOK()
			queues, _, _, _ := r.dev.state()
			if len(queues) != 2 {
				t.Fatalf("device got %d queues", len(queues))
			}
			for i, q := range queues {
				if q == nil || q.Size() != tt.want[i] {
					t.Fatalf("queue %d: %v, want size %d", i, q, tt.want[i])
				}
			}
			echoOnce(t, d, 1, "sized")
		})
	}
}

func TestNotifyReachesTheDeviceAndItsReplySignalsTheQueueVector(t *testing.T) {
	r := newRig(t, newEcho(64, 64))
	d := r.probe()
	u := echoOnce(t, d, 1, "hello, virtio-pci")
	if u.Written != uint32(len("hello, virtio-pci")) {
		t.Fatalf("written %d", u.Written)
	}
	r.msi.Wait(t, virtiotest.PCIQueueVector(1), timeout)
	if n := r.msi.Count(virtiotest.PCIQueueVector(0)); n != 0 {
		t.Fatalf("queue 0's vector signalled %d times for queue 1's work", n)
	}
	if r.dev.notifies(1) != 1 || r.dev.notifies(0) != 0 {
		t.Fatalf("notifies: queue 0 %d, queue 1 %d", r.dev.notifies(0), r.dev.notifies(1))
	}
	if d.ISR()&1 != 0 {
		t.Fatal("ISR queue bit set while MSI-X is enabled")
	}
}

func TestQueueVectorMappingFollowsTheDriver(t *testing.T) {
	r := newRig(t, newEcho(64, 64))
	d := r.probe()
	// Both queues on vector 2.
	if got := d.SetQueueVector(0, 2); got != 2 {
		t.Fatalf("vector 2 reads back %#x", got)
	}
	echoOnce(t, d, 0, "moved")
	r.msi.Wait(t, 2, timeout)
	if n := r.msi.Count(1); n != 0 {
		t.Fatalf("old vector 1 signalled %d times", n)
	}
	tests := []struct {
		name string
		v    uint16
		want uint16
	}{
		{"the last vector", 2, 2},
		{"just past the table", 3, virtiopci.NoVector},
		{"far past the table", 0x7fff, virtiopci.NoVector},
		{"no vector", virtiopci.NoVector, virtiopci.NoVector},
	}
	for _, tt := range tests {
		if got := d.SetQueueVector(0, tt.v); got != tt.want {
			t.Errorf("%s: queue vector %#x reads %#x, want %#x", tt.name, tt.v, got, tt.want)
		}
		if got := d.SetConfigVector(tt.v); got != tt.want {
			t.Errorf("%s: config vector %#x reads %#x, want %#x", tt.name, tt.v, got, tt.want)
		}
	}
	before := len(r.msi.Sent())
	echoOnce(t, d, 0, "silent")
	if got := len(r.msi.Sent()); got != before {
		t.Fatalf("a queue with no vector signalled: %v", r.msi.Sent()[before:])
	}
}

func TestMaskedVectorPendsAndUnmaskingDeliversIt(t *testing.T) {
	tests := []struct {
		name         string
		mask, unmask func(d *virtiotest.PCIDriver, v int)
	}{
		{"vector mask",
			func(d *virtiotest.PCIDriver, v int) { d.MaskVector(v, true) },
			func(d *virtiotest.PCIDriver, v int) { d.MaskVector(v, false) }},
		{"function mask",
			func(d *virtiotest.PCIDriver, _ int) { d.SetMSIXControl(true, true) },
			func(d *virtiotest.PCIDriver, _ int) { d.SetMSIXControl(true, false) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, newEcho(64))
			d := r.probe()
			v := virtiotest.PCIQueueVector(0)
			tt.mask(d, v)
			echoOnce(t, d, 0, "while masked")
			if n := r.msi.Count(v); n != 0 {
				t.Fatalf("masked vector signalled %d times", n)
			}
			if !d.MSIXPending(v) {
				t.Fatal("masked vector not pending in the PBA")
			}
			tt.unmask(d, v)
			if n := r.msi.Count(v); n != 1 {
				t.Fatalf("unmasking delivered %d signals, want 1", n)
			}
			if d.MSIXPending(v) {
				t.Fatal("still pending after delivery")
			}
		})
	}
}

// setupQueue0 programs queue 0 by hand, as a driver that gets it wrong
// might, enables it and sets DRIVER_OK.
func setupQueue0(d *virtiotest.PCIDriver, size uint16, desc, avail, used uint64) {
	c := d.Layout().Common
	d.WriteMMIO(c+0x16, 2, 0)
	d.WriteMMIO(c+0x18, 2, uint64(size))
	d.WriteMMIO(c+0x20, 8, desc)
	d.WriteMMIO(c+0x28, 8, avail)
	d.WriteMMIO(c+0x30, 8, used)
	d.WriteMMIO(c+0x1a, 2, uint64(virtiotest.PCIQueueVector(0)))
	d.WriteMMIO(c+0x10, 2, virtiotest.PCIConfigVector)
	d.WriteMMIO(c+0x1c, 2, 1)
	d.DriverOK()
}

func TestActivationFailureSetsDeviceNeedsResetAndSignalsConfig(t *testing.T) {
	refused := errors.New("device refused")
	tests := []struct {
		name string
		// size and the descriptor table offset from a good place
		size    uint16
		descOff uint64
		refuse  bool
		outside bool
		want    error
	}{
		{name: "device refuses", size: 64, refuse: true, want: refused},
		{name: "rings outside RAM", size: 64, outside: true, want: memory.ErrOutOfRange},
		{name: "misaligned descriptor table", size: 64, descOff: 8},
		{name: "queue size not a power of 2", size: 48},
		{name: "queue size zero", size: 0},
		{name: "queue size above the maximum", size: 128},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, newEcho(64))
			if tt.refuse {
				r.dev.activateErr = refused
			}
			d := r.attach()
			if !d.Negotiate(virtio.FeatureVersion1) {
				t.Fatal("features refused")
			}
			desc := r.alloc.Get(16*256) + tt.descOff
			if tt.outside {
				desc = ramSize - 16
			}
			setupQueue0(d, tt.size, desc, r.alloc.Get(6+2*256), r.alloc.Get(6+8*256))
			if d.Status()&virtio.StatusDeviceNeedsReset == 0 {
				t.Fatalf("status %#x, want DEVICE_NEEDS_RESET", d.Status())
			}
			r.msi.Wait(t, virtiotest.PCIConfigVector, timeout)
			if d.ISR()&2 == 0 {
				t.Fatal("ISR config bit not set")
			}
			if err := r.tr.Err(); err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Err() = %v, want %v", err, tt.want)
			}
			d.WriteMMIO(d.Layout().Notify, 2, 0)
			if r.dev.notifies(0) != 0 {
				t.Fatal("a device that failed to activate was notified")
			}
			// The driver recovers with a reset.
			r.dev.activateErr = nil
			d = r.probe()
			if r.tr.Err() != nil {
				t.Fatalf("Err() = %v after reset", r.tr.Err())
			}
			echoOnce(t, d, 0, "recovered")
		})
	}
}

func TestWritingStatusZeroResetsTheDeviceAndEveryRegister(t *testing.T) {
	r := newRig(t, newEcho(64, 32))
	d := r.probe()
	echoOnce(t, d, 0, "before reset")
	r.dev.mu.Lock()
	oldIRQ := r.dev.irq
	r.dev.mu.Unlock()
	_, _, resetsBefore, _ := r.dev.state()
	d.Reset()
	queues, features, resets, _ := r.dev.state()
	if resets != resetsBefore+1 || queues != nil || features != 0 {
		t.Fatalf("device after reset: %d resets (was %d), queues %v, features %#x", resets, resetsBefore, queues, features)
	}
	c := d.Layout().Common
	regs := []struct {
		name string
		off  uint64
		n    int
		want uint64
	}{
		{"device_status", 0x14, 1, 0},
		{"driver_feature", 0x0c, 4, 0},
		{"config_msix_vector", 0x10, 2, virtiopci.NoVector},
		{"queue_select", 0x16, 2, 0},
		{"queue_size", 0x18, 2, 64},
		{"queue_msix_vector", 0x1a, 2, virtiopci.NoVector},
		{"queue_enable", 0x1c, 2, 0},
		{"queue_desc", 0x20, 8, 0},
		{"queue_driver", 0x28, 8, 0},
		{"queue_device", 0x30, 8, 0},
	}
	for _, reg := range regs {
		if got := d.ReadMMIO(c+reg.off, reg.n); got != reg.want {
			t.Errorf("%s = %#x after reset, want %#x", reg.name, got, reg.want)
		}
	}
	// Kicks and the old interrupter reach nothing any more.
	before := len(r.msi.Sent())
	d.WriteMMIO(d.Layout().Notify, 2, 0)
	if r.dev.notifies(0) != 1 {
		t.Fatalf("device notified %d times, want only the one before reset", r.dev.notifies(0))
	}
	if err := oldIRQ.Queue(0); err != nil {
		t.Fatalf("stale interrupter: %v", err)
	}
	if err := oldIRQ.Config(); err != nil {
		t.Fatalf("stale interrupter: %v", err)
	}
	if got := len(r.msi.Sent()); got != before {
		t.Fatalf("a reset device's interrupter still signals: %v", r.msi.Sent()[before:])
	}
	// And the driver can start over.
	d = r.probe()
	echoOnce(t, d, 1, "after reset")
}

func TestConfigChangeBumpsTheGenerationAndSignalsTheConfigVector(t *testing.T) {
	r := newRig(t, newEcho(64))
	d := r.probe()
	gen := d.ConfigGeneration()
	if d.ConfigGeneration() != gen {
		t.Fatal("config_generation changes by itself")
	}
	if err := r.dev.changeConfig(0x5a); err != nil {
		t.Fatal(err)
	}
	r.msi.Wait(t, virtiotest.PCIConfigVector, timeout)
	if d.ConfigGeneration() == gen {
		t.Fatal("config_generation unchanged after a config change")
	}
	var b [1]byte
	d.ReadConfig(0, b[:])
	if b[0] != 0x5a {
		t.Fatalf("config byte %#x, want 0x5a", b[0])
	}
	if isr := d.ISR(); isr != 2 {
		t.Fatalf("ISR %#x, want the config bit", isr)
	}
	if isr := d.ISR(); isr != 0 {
		t.Fatalf("ISR %#x after a read, want cleared", isr)
	}
}

func TestISRQueueBitIsSetOnlyWithMSIXDisabled(t *testing.T) {
	r := newRig(t, newEcho(64))
	d := r.probe()
	echoOnce(t, d, 0, "msi-x")
	if isr := d.ISR(); isr != 0 {
		t.Fatalf("ISR %#x with MSI-X enabled", isr)
	}
	d.SetMSIXControl(false, false)
	before := len(r.msi.Sent())
	echoOnce(t, d, 0, "intx")
	if isr := d.ISR(); isr != 1 {
		t.Fatalf("ISR %#x with MSI-X disabled, want the queue bit", isr)
	}
	if isr := d.ISR(); isr != 0 {
		t.Fatalf("ISR %#x after a read, want cleared", isr)
	}
	if got := len(r.msi.Sent()); got != before {
		t.Fatal("MSI-X message sent while MSI-X is disabled")
	}
}

func TestDeviceConfigAccessesReachTheDevice(t *testing.T) {
	r := newRig(t, newEcho(64))
	d := r.probe()
	d.WriteConfig(2, []byte{0xaa, 0xbb})
	var b [4]byte
	d.ReadConfig(0, b[:])
	if b != [4]byte{0, 0, 0xaa, 0xbb} {
		t.Fatalf("config reads % x", b)
	}
	// Past the device's config: zeros, as the device contract says.
	d.ReadConfig(0x100, b[:])
	if b != [4]byte{} {
		t.Fatalf("config past the end reads % x", b)
	}
}

func TestNotifyBeforeDriverOKOrForUnknownQueuesIsIgnored(t *testing.T) {
	r := newRig(t, newEcho(64, 64))
	d := r.attach()
	n := d.Layout().Notify
	d.WriteMMIO(n, 2, 0)
	if !d.Negotiate(virtio.FeatureVersion1) {
		t.Fatal("features refused")
	}
	d.SetupQueues(0)
	d.WriteMMIO(n+4, 2, 1)
	if r.dev.notifies(0)+r.dev.notifies(1) != 0 {
		t.Fatal("device notified before DRIVER_OK")
	}
	d.DriverOK()
	for _, off := range []uint64{8, 12, 2, 1, uint64(d.Layout().NotifyLen)} {
		d.WriteMMIO(n+off, 2, 0)
	}
	for q := range 8 {
		if q > 1 && r.dev.notifies(q) != 0 {
			t.Fatalf("device notified for queue %d it does not have", q)
		}
	}
	if r.dev.notifies(0) != 0 {
		t.Fatal("a misaligned kick reached queue 0")
	}
}

func TestNewRejectsDevicesItCannotPresent(t *testing.T) {
	mem := virtiotest.Memory(t, 1<<20)
	tests := []struct {
		name string
		dev  virtio.Device
		mem  *memory.Memory
		msi  pci.MSISender
	}{
		{"no queues", newEcho(), mem, virtiotest.NewMSIRecorder()},
		{"queue size not a power of 2", newEcho(64, 100), mem, virtiotest.NewMSIRecorder()},
		{"queue size zero", newEcho(0), mem, virtiotest.NewMSIRecorder()},
		{"too many queues", newEcho(make([]uint16, virtiopci.MaxQueues+1)...), mem, virtiotest.NewMSIRecorder()},
		{"no memory", newEcho(64), nil, virtiotest.NewMSIRecorder()},
		{"no MSI sender", newEcho(64), mem, nil},
		{"no device", nil, mem, virtiotest.NewMSIRecorder()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := virtiopci.New(tt.dev, tt.mem, tt.msi); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestAThousandQueuesFitTheLayout(t *testing.T) {
	sizes := make([]uint16, virtiopci.MaxQueues)
	for i := range sizes {
		sizes[i] = 2
	}
	r := newRig(t, newEcho(sizes...))
	d := r.probe()
	echoOnce(t, d, virtiopci.MaxQueues-1, "last")
	r.msi.Wait(t, virtiotest.PCIQueueVector(virtiopci.MaxQueues-1), timeout)
}

// hostileValues are written at every offset and width.
var hostileValues = []uint64{0, ^uint64(0), 0x8000_0001, 0x0f0f_0f0f_0f0f_0f0f}

func TestHostileBARAccessesAnywhereAreHarmless(t *testing.T) {
	r := newRig(t, newEcho(64, 64))
	d := r.probe()
	bar := d.Layout().BARs[virtiopci.BAR]
	d.ConfigWrite(pci.RegCommand, 2, 0)
	d.ConfigWrite(pci.RegBAR0, 4, 0xffff_ffff)
	size := uint64(^(d.ConfigRead(pci.RegBAR0, 4) &^ 0xf) + 1)
	d.ConfigWrite(pci.RegBAR0, 4, uint32(bar))
	d.ConfigWrite(pci.RegCommand, 2, pci.CommandMemory|pci.CommandBusMaster)
	// Every offset near each structure's edges, every width, including
	// unaligned, odd and straddling accesses, and past the BAR.
	var offsets []uint64
	for _, edge := range []uint64{0, 0x38, 0x40, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, size} {
		for delta := uint64(0); delta < 24; delta++ {
			offsets = append(offsets, edge+delta, edge-delta-1)
		}
	}
	for _, off := range offsets {
		for _, n := range []int{1, 2, 3, 4, 5, 8} {
			for _, v := range hostileValues {
				var b [8]byte
				binary.LittleEndian.PutUint64(b[:], v)
				if err := r.bus.MMIO().WriteMMIO(bar+off-windowBase, b[:n]); err != nil {
					t.Fatalf("write %d bytes at +%#x: %v", n, off, err)
				}
				if err := r.bus.MMIO().ReadMMIO(bar+off-windowBase, b[:n]); err != nil {
					t.Fatalf("read %d bytes at +%#x: %v", n, off, err)
				}
			}
		}
	}
	if _, _, _, err := r.dev.state(); err != nil {
		t.Logf("the device gave up, as it may: %v", err)
	}
	// Whatever state that left, a driver starting over gets a working
	// device.
	d = r.probe()
	echoOnce(t, d, 1, "still alive")
	r.msi.Wait(t, virtiotest.PCIQueueVector(1), timeout)
}

func TestAccessesToOtherBARsAreNotTheTransports(t *testing.T) {
	r := newRig(t, newEcho(64))
	r.probe()
	for _, bar := range []int{-1, 1, 2, 5, 6} {
		b := []byte{0, 0, 0, 0}
		r.tr.WriteBAR(bar, 0x14, b)
		r.tr.ReadBAR(bar, 0x14, b)
		if binary.LittleEndian.Uint32(b) != 0xffff_ffff {
			t.Errorf("BAR %d reads % x, want all ones", bar, b)
		}
	}
	if _, _, resets, _ := r.dev.state(); resets != 1 {
		t.Fatalf("a write to another BAR reached device_status (%d resets)", resets)
	}
}

// failingSender fails every message.
type failingSender struct{ err error }

func (f failingSender) SignalMSI(uint64, uint32) error { return f.err }

func TestInterruptFailuresReachTheDeviceAndTheErrorReport(t *testing.T) {
	boom := errors.New("no route to APIC")
	dev := newEcho(64)
	bus, err := pci.NewBus(windowBase, windowSize)
	if err != nil {
		t.Fatal(err)
	}
	mem := virtiotest.Memory(t, ramSize)
	alloc := virtiotest.NewAlloc(0x1000, ramSize)
	tr, err := virtiopci.New(dev, mem, failingSender{boom})
	if err != nil {
		t.Fatal(err)
	}
	slot, err := bus.Add(tr)
	if err != nil {
		t.Fatal(err)
	}
	d := virtiotest.Probe(t, bus, windowBase, slot, mem, alloc, ^virtio.FeatureEventIdx)
	echoOnce(t, d, 0, "lost interrupt")
	if _, _, _, err := dev.state(); !errors.Is(err, boom) {
		t.Fatalf("device saw %v, want %v", err, boom)
	}
	dev.mu.Lock()
	irq := dev.irq
	dev.mu.Unlock()
	if err := irq.Queue(1); err == nil {
		t.Fatal("an interrupt for a queue the device does not have succeeded")
	}
	if err := irq.Config(); !errors.Is(err, boom) {
		t.Fatalf("config interrupt = %v, want %v", err, boom)
	}
	// A failed activation reports both what failed and the lost signal.
	dev.activateErr = errors.New("refused")
	d = virtiotest.Attach(t, bus, windowBase, slot, mem, alloc)
	if !d.Negotiate(virtio.FeatureVersion1) {
		t.Fatal("features refused")
	}
	d.SetupQueues(0)
	d.DriverOK()
	if err := tr.Err(); !errors.Is(err, dev.activateErr) || !errors.Is(err, boom) {
		t.Fatalf("Err() = %v, want both the refusal and the signal failure", err)
	}
}

func TestHostileConfigSpaceWritesKeepTheIdentity(t *testing.T) {
	r := newRig(t, newEcho(64))
	d := r.probe()
	var before [64]byte
	for reg := 0; reg < 64; reg += 4 {
		binary.LittleEndian.PutUint32(before[reg:], d.ConfigRead(reg, 4))
	}
	for reg := range pci.ConfigSize {
		for _, n := range []int{1, 2, 4} {
			if reg&3+n > 4 {
				continue
			}
			for _, v := range hostileValues {
				d.ConfigWrite(reg, n, uint32(v))
				d.ConfigRead(reg, n)
			}
		}
	}
	for _, reg := range []int{pci.RegVendorID, pci.RegRevision, pci.RegSubsystemVID, pci.RegCapabilities} {
		if got, want := d.ConfigRead(reg, 4), binary.LittleEndian.Uint32(before[reg:]); got != want {
			t.Errorf("register %#x changed from %#x to %#x", reg, want, got)
		}
	}
}

func TestConcurrentNotifiesFromSeveralVCPUsAllComplete(t *testing.T) {
	const queues, rounds = 4, 200
	sizes := make([]uint16, queues)
	for i := range sizes {
		sizes[i] = 16
	}
	r := newRig(t, newEcho(sizes...))
	d := r.probe()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Spurious kicks and register reads from other vCPUs meanwhile.
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				d.Notify(i % queues)
				d.ConfigGeneration()
				d.ISR()
			}
		}()
	}
	var workers sync.WaitGroup
	for q := range queues {
		workers.Add(1)
		go func() {
			defer workers.Done()
			vq := d.Queue(q)
			for i := range rounds {
				msg := fmt.Sprintf("q%d-%d", q, i)
				vq.Add([][]byte{[]byte(msg)}, []int{len(msg)})
				d.Notify(q)
				deadline := time.Now().Add(timeout)
				for {
					u, ok := vq.Next()
					if ok {
						if string(u.Data) != msg {
							t.Errorf("queue %d echoed %q, want %q", q, u.Data, msg)
							return
						}
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("queue %d: no reply to %q", q, msg)
						return
					}
					time.Sleep(10 * time.Microsecond)
				}
			}
		}()
	}
	workers.Wait()
	close(stop)
	wg.Wait()
	if _, _, _, err := r.dev.state(); err != nil {
		t.Fatal(err)
	}
	for q := range queues {
		if n := r.msi.Count(virtiotest.PCIQueueVector(q)); n == 0 {
			t.Errorf("queue %d never signalled", q)
		}
	}
}
