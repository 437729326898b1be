// Package virtiopci is the modern virtio-over-PCI transport (virtio 1.2
// §4.1) for any virtio.Device: a PCI function with vendor-specific
// capabilities pointing at the common configuration, ISR, device
// configuration and notification structures in one 64-bit memory BAR,
// which also holds the MSI-X table and PBA. Interrupts are MSI-X only:
// config changes use the vector the driver programs in
// config_msix_vector, each queue the one in its queue_msix_vector.
package virtiopci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/pci"
	"github.com/joeyrt/joey/vmm/virtio"
)

// PCI identity of a non-transitional virtio device (virtio 1.2 §4.1.2).
const (
	VendorID     = 0x1af4
	DeviceIDBase = 0x1040
	SubsystemID  = 0x1100
	Revision     = 1
)

// Virtio PCI capability cfg_type values (virtio 1.2 §4.1.4).
const (
	CapCommon = 1
	CapNotify = 2
	CapISR    = 3
	CapDevice = 4
)

// BAR is the memory BAR holding every structure.
const BAR = 0

// Layout of BAR 0. Each structure starts on its own page; the notify area
// and the MSI-X table grow with the number of queues.
const (
	commonOffset = 0x0000
	commonSize   = 0x40
	isrOffset    = 0x1000
	isrSize      = 4
	deviceOffset = 0x2000
	deviceSize   = 0x1000
	notifyOffset = 0x3000
	// NotifyMultiplier is notify_off_multiplier: queue q is notified by a
	// write at notify offset q*NotifyMultiplier.
	NotifyMultiplier = 4
	page             = 0x1000
)

// MaxQueues bounds the queues of one device so that the notify area and
// the MSI-X table (one vector per queue plus the config vector) stay small.
const MaxQueues = 1024

// NoVector is VIRTIO_MSI_NO_VECTOR.
const NoVector = 0xffff

// ISR status bits.
const (
	isrQueue  = 1
	isrConfig = 2
)

// layout is where the per-device structures of BAR 0 are.
type layout struct {
	notifyLen        uint64
	tableOff, pbaOff uint64
	barSize          uint64
}

func newLayout(queues int) layout {
	vectors := uint64(queues + 1)
	var l layout
	l.notifyLen = uint64(queues) * NotifyMultiplier
	l.tableOff = notifyOffset + roundUp(l.notifyLen, page)
	l.pbaOff = l.tableOff + roundUp(vectors*pci.MSIXEntrySize, page)
	end := l.pbaOff + roundUp((vectors+63)/64*8, page)
	l.barSize = page
	for l.barSize < end {
		l.barSize <<= 1
	}
	return l
}

func roundUp(v, align uint64) uint64 { return (v + align - 1) / align * align }

// classFor is the PCI class code Linux and QEMU give each device type.
func classFor(t virtio.DeviceType) uint32 {
	switch t {
	case virtio.TypeNet:
		return 0x020000 // Ethernet controller
	case virtio.TypeBlock:
		return 0x010000 // SCSI storage controller, as QEMU's virtio-blk
	case virtio.TypeConsole:
		return 0x078000 // other communication controller
	}
	return 0xff0000 // unassigned class
}

var (
	_ pci.Device         = (*Transport)(nil)
	_ virtio.Interrupter = (*interrupter)(nil)
)

// Transport is one virtio device on the PCI bus. It implements pci.Device.
type Transport struct {
	dev      virtio.Device
	mem      *memory.Memory
	cfg      *pci.ConfigSpace
	msix     *pci.MSIX
	layout   layout
	offered  uint64
	maxSizes []uint16
	// life serializes what starts and stops the device (DRIVER_OK and
	// reset, exclusively) against notifies (shared), so the device never
	// sees a kick while it activates or resets.
	life sync.RWMutex
	// mu guards the registers and everything below; it is never held
	// while calling into the device, which may call the interrupter back.
	mu sync.Mutex
	r  registers
	// generation is config_generation; it survives resets so a driver
	// never sees an old value come back.
	generation uint8
	// epoch counts resets: an interrupter from before the last reset is
	// stale and signals nothing.
	epoch uint64
	// active is set once the device accepted DRIVER_OK.
	active bool
	// err is why the device last needed a reset, for the VMM's log.
	err error
	// kicks is set by UseIOEventFDs.
	kicks *kicks
	counters
}

// registers are the common configuration fields a reset clears.
type registers struct {
	deviceFeatureSelect uint32
	driverFeatureSelect uint32
	driverFeatures      uint64
	configVector        uint16
	status              uint8
	queueSelect         uint16
	queues              []queueRegs
	isr                 uint8
}

type queueRegs struct {
	size, vector      uint16
	enabled           bool
	desc, avail, used uint64
}

// New wraps dev in a virtio-pci function. mem is guest RAM for the
// queues; msi delivers the device's MSI-X messages.
func New(dev virtio.Device, mem *memory.Memory, msi pci.MSISender) (*Transport, error) {
	if dev == nil || mem == nil || msi == nil {
		return nil, errors.New("new virtio-pci transport: missing device, memory or MSI sender")
	}
	sizes := dev.QueueSizes()
	if len(sizes) == 0 || len(sizes) > MaxQueues {
		return nil, fmt.Errorf("new virtio-pci %v: %d queues, want 1 to %d", dev.Type(), len(sizes), MaxQueues)
	}
	for i, s := range sizes {
		if s == 0 || s > 32768 || s&(s-1) != 0 {
			return nil, fmt.Errorf("new virtio-pci %v: queue %d has size %d, want a power of 2 up to 32768", dev.Type(), i, s)
		}
	}
	t := &Transport{
		dev:      dev,
		mem:      mem,
		layout:   newLayout(len(sizes)),
		offered:  dev.Features() | virtio.FeatureVersion1 | virtio.FeatureIndirectDesc | virtio.FeatureEventIdx,
		maxSizes: append([]uint16(nil), sizes...),
	}
	t.cfg = pci.NewConfigSpace(pci.Header{
		VendorID:          VendorID,
		DeviceID:          DeviceIDBase + uint16(dev.Type()),
		Revision:          Revision,
		Class:             classFor(dev.Type()),
		SubsystemVendorID: VendorID,
		SubsystemID:       SubsystemID,
	})
	if err := t.cfg.AddMemoryBAR(BAR, t.layout.barSize, true); err != nil {
		return nil, fmt.Errorf("new virtio-pci %v: %w", dev.Type(), err)
	}
	caps := []struct {
		typ          uint8
		offset, size uint64
	}{
		{CapCommon, commonOffset, commonSize},
		{CapISR, isrOffset, isrSize},
		{CapDevice, deviceOffset, deviceSize},
		{CapNotify, notifyOffset, t.layout.notifyLen},
	}
	for _, c := range caps {
		if _, err := t.cfg.AddCapability(pci.CapVendor, virtioCap(c.typ, c.offset, c.size)); err != nil {
			return nil, fmt.Errorf("new virtio-pci %v: %w", dev.Type(), err)
		}
	}
	var err error
	t.msix, err = pci.NewMSIX(t.cfg, len(sizes)+1, BAR, t.layout.tableOff, t.layout.pbaOff, msi)
	if err != nil {
		return nil, fmt.Errorf("new virtio-pci %v: %w", dev.Type(), err)
	}
	t.r = t.resetRegisters()
	return t, nil
}

// virtioCap is the body of a struct virtio_pci_cap (after cap_vndr and
// cap_next); the notify capability adds notify_off_multiplier.
func virtioCap(typ uint8, offset, size uint64) []byte {
	n := 14
	if typ == CapNotify {
		n += 4
	}
	b := make([]byte, n)
	b[0] = byte(n + 2) // cap_len
	b[1] = typ
	b[2] = BAR
	binary.LittleEndian.PutUint32(b[6:], uint32(offset))
	binary.LittleEndian.PutUint32(b[10:], uint32(size))
	if typ == CapNotify {
		binary.LittleEndian.PutUint32(b[14:], NotifyMultiplier)
	}
	return b
}

func (t *Transport) resetRegisters() registers {
	r := registers{configVector: NoVector, queues: make([]queueRegs, len(t.maxSizes))}
	for i, s := range t.maxSizes {
		r.queues[i] = queueRegs{size: s, vector: NoVector}
	}
	return r
}

// Config is the function's configuration space.
func (t *Transport) Config() *pci.ConfigSpace { return t.cfg }

// Err is why the device last set DEVICE_NEEDS_RESET, or nil; a reset by
// the driver clears it.
func (t *Transport) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// region names the structure an access of n bytes at BAR offset off falls
// wholly inside, and the offset within it.
func (t *Transport) region(off uint64, n int) (kind int, rel uint64) {
	within := func(start, size uint64) bool {
		return off >= start && off-start < size && uint64(n) <= size-(off-start)
	}
	switch {
	case within(commonOffset, commonSize):
		return CapCommon, off - commonOffset
	case within(isrOffset, isrSize):
		return CapISR, off - isrOffset
	case within(deviceOffset, deviceSize):
		return CapDevice, off - deviceOffset
	case within(notifyOffset, t.layout.notifyLen):
		return CapNotify, off - notifyOffset
	}
	return 0, 0
}

// ReadBAR serves a guest read of BAR 0. Gaps and accesses straddling two
// structures read all ones.
func (t *Transport) ReadBAR(bar int, off uint64, data []byte) {
	if t.msix.ReadBAR(bar, off, data) {
		return
	}
	kind, rel := 0, uint64(0)
	if bar == BAR && len(data) > 0 {
		kind, rel = t.region(off, len(data))
	}
	switch kind {
	case CapCommon:
		t.readCommon(rel, data)
	case CapISR:
		t.readISR(rel, data)
	case CapDevice:
		clear(data)
		t.dev.ReadConfig(rel, data)
	default:
		// The notify area is write-only.
		fill(data)
	}
}

// WriteBAR serves a guest write of BAR 0; writes that mean nothing are
// ignored.
func (t *Transport) WriteBAR(bar int, off uint64, data []byte) {
	if t.msix.WriteBAR(bar, off, data) || bar != BAR || len(data) == 0 {
		return
	}
	kind, rel := t.region(off, len(data))
	switch kind {
	case CapCommon:
		t.writeCommon(rel, data)
	case CapDevice:
		t.dev.WriteConfig(rel, data)
	case CapNotify:
		// Without VIRTIO_F_NOTIFICATION_DATA the driver writes the queue
		// index as 16 bits; the address alone names the queue.
		if rel%NotifyMultiplier == 0 && (len(data) == 2 || len(data) == 4) {
			t.exitKicks.Add(1)
			t.notify(int(rel / NotifyMultiplier))
		}
	}
}

// readISR returns the ISR status and clears it, as reading it
// acknowledges the interrupt.
func (t *Transport) readISR(rel uint64, data []byte) {
	var b [isrSize]byte
	t.mu.Lock()
	b[0] = t.r.isr
	if rel == 0 {
		t.r.isr = 0
	}
	t.mu.Unlock()
	copy(data, b[rel:])
}

// notify passes the driver's kick of queue q to an active device.
func (t *Transport) notify(q int) {
	t.life.RLock()
	defer t.life.RUnlock()
	t.mu.Lock()
	ok := t.active && q < len(t.r.queues) && t.r.queues[q].enabled
	t.mu.Unlock()
	if ok {
		t.dev.Notify(q)
	}
}

// interrupter is what an activation hands the device.
type interrupter struct {
	t     *Transport
	epoch uint64
}

// Queue signals queue q's vector; with MSI-X off it only sets the ISR
// queue bit (INTx is not wired).
func (i *interrupter) Queue(q int) error {
	t := i.t
	t.mu.Lock()
	if i.epoch != t.epoch {
		// The device was reset: the driver no longer waits for this.
		t.mu.Unlock()
		return nil
	}
	if q < 0 || q >= len(t.r.queues) {
		t.mu.Unlock()
		return fmt.Errorf("virtio-pci %v: interrupt for queue %d of %d", t.dev.Type(), q, len(t.r.queues))
	}
	vector := t.r.queues[q].vector
	on := t.msix.Enabled()
	if !on {
		t.r.isr |= isrQueue
	}
	t.mu.Unlock()
	if !on || vector == NoVector {
		return nil
	}
	if err := t.msix.Signal(int(vector)); err != nil {
		return fmt.Errorf("virtio-pci %v queue %d interrupt: %w", t.dev.Type(), q, err)
	}
	return nil
}

// Config tells the driver the device configuration changed: a new
// config_generation, the ISR config bit and the config vector.
func (i *interrupter) Config() error {
	t := i.t
	t.mu.Lock()
	if i.epoch != t.epoch {
		t.mu.Unlock()
		return nil
	}
	t.generation++
	t.mu.Unlock()
	return t.signalConfig()
}

// signalConfig sets the ISR config bit and signals the config vector.
func (t *Transport) signalConfig() error {
	t.mu.Lock()
	t.r.isr |= isrConfig
	vector := t.r.configVector
	t.mu.Unlock()
	if vector == NoVector || !t.msix.Enabled() {
		return nil
	}
	if err := t.msix.Signal(int(vector)); err != nil {
		return fmt.Errorf("virtio-pci %v config interrupt: %w", t.dev.Type(), err)
	}
	return nil
}

func fill(data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}
