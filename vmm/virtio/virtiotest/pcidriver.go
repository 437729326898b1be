package virtiotest

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/pci"
	"github.com/joeyrt/joey/vmm/virtio"
)

// What a virtio-pci driver knows from the spec (virtio 1.2 §4.1). These
// are spelled out here rather than taken from the transport so that each
// side checks the other.
const (
	pciVendorVirtio  = 0x1af4
	pciDeviceModern  = 0x1040
	pciCapVendor     = 0x09
	pciCapMSIX       = 0x11
	pciCfgCommon     = 1
	pciCfgNotify     = 2
	pciCfgISR        = 3
	pciCfgDevice     = 4
	pciNoVector      = 0xffff
	commonDFSelect   = 0x00
	commonDF         = 0x04
	commonGFSelect   = 0x08
	commonGF         = 0x0c
	commonMSIX       = 0x10
	commonNumQ       = 0x12
	commonStatus     = 0x14
	commonGeneration = 0x15
	commonQSelect    = 0x16
	commonQSize      = 0x18
	commonQMSIX      = 0x1a
	commonQEnable    = 0x1c
	commonQNotifyOff = 0x1e
	commonQDesc      = 0x20
	commonQDriver    = 0x28
	commonQDevice    = 0x30
	msixEntrySize    = 16
)

// PCIConfigVector is the MSI-X vector the PCIDriver gives config changes;
// queue q gets PCIQueueVector(q). That is Linux's layout when it can have
// one vector per queue.
const PCIConfigVector = 0

// PCIQueueVector is the MSI-X vector the PCIDriver gives queue q.
func PCIQueueVector(q int) int { return q + 1 }

// MSIMessage is the distinct (address, data) the PCIDriver programs into
// MSI-X vector v: the local APIC window, and v in the data.
func MSIMessage(v int) (addr uint64, data uint32) {
	return 0xfee0_0000, 0x4000 | uint32(v)
}

// PCILayout is where a PCIDriver found the device's structures, as
// guest-physical addresses.
type PCILayout struct {
	// BARs holds the base address of each memory BAR (0: none).
	BARs                                    [pci.NumBARs]uint64
	Common, ISR, Device, Notify             uint64
	CommonLen, ISRLen, DeviceLen, NotifyLen uint32
	NotifyMultiplier                        uint32
	// MSIXCap is the config-space offset of the MSI-X capability.
	MSIXCap            int
	MSIXTable, MSIXPBA uint64
	MSIXVectors        int
}

// PCIDriver is a virtio-pci driver as Linux's virtio_pci_modern behaves,
// talking to a pci.Bus only through configuration mechanism 1 and MMIO in
// the bus window, as a guest does. Probe brings a device up in one call;
// Attach, Negotiate, SetupQueues and DriverOK are the same steps one at a
// time, for tests that stop in between. Config-space accesses are
// serialized as a kernel does (one CONFIG_ADDRESS register), so Notify
// and the MMIO accessors may be called from several goroutines; each
// Queue belongs to one goroutine at a time.
type PCIDriver struct {
	t      testing.TB
	bus    *pci.Bus
	base   uint64
	slot   int
	mem    *memory.Memory
	alloc  *Alloc
	layout PCILayout
	// conf serializes CONFIG_ADDRESS/CONFIG_DATA pairs.
	conf      sync.Mutex
	features  uint64
	queues    []*Queue
	notifyOff []uint16
}

// Probe attaches to the virtio device in slot of bus (whose MMIO window
// starts at windowBase), negotiates the offered features masked by accept,
// sets up every queue at the size the device offers with rings from
// alloc, and sets DRIVER_OK. Config changes use vector PCIConfigVector and
// queue q vector PCIQueueVector(q). Any failure fails the test.
//
// Queue never moves used_event, so with VIRTIO_F_EVENT_IDX accepted a
// device interrupts for the first used entry only; tests that count
// interrupts leave it out of accept.
func Probe(t testing.TB, bus *pci.Bus, windowBase uint64, slot int, mem *memory.Memory, alloc *Alloc, accept uint64) *PCIDriver {
	t.Helper()
	d := Attach(t, bus, windowBase, slot, mem, alloc)
	if f := d.DeviceFeatures() & accept; !d.Negotiate(f) {
		t.Fatalf("virtio-pci slot %d: device refused features %#x", slot, f)
	}
	d.SetupQueues(0)
	d.DriverOK()
	if s := d.Status(); s&virtio.StatusDriverOK == 0 || s&virtio.StatusDeviceNeedsReset != 0 {
		t.Fatalf("virtio-pci slot %d: status %#x after DRIVER_OK", slot, s)
	}
	return d
}

// Attach finds the virtio device in slot, sizes its BARs, walks its
// capability list to locate the virtio structures and the MSI-X table,
// enables memory space and bus mastering, and programs and unmasks every
// MSI-X vector with MSIMessage. The device itself is not touched.
func Attach(t testing.TB, bus *pci.Bus, windowBase uint64, slot int, mem *memory.Memory, alloc *Alloc) *PCIDriver {
	t.Helper()
	d := &PCIDriver{t: t, bus: bus, base: windowBase, slot: slot, mem: mem, alloc: alloc}
	id := d.ConfigRead(pci.RegVendorID, 4)
	if id&0xffff != pciVendorVirtio || id>>16 < pciDeviceModern || id>>16 > 0x107f {
		t.Fatalf("slot %d holds %#x, not a modern virtio device", slot, id)
	}
	d.sizeBARs()
	d.walkCapabilities()
	d.ConfigWrite(pci.RegCommand, 2, d.ConfigRead(pci.RegCommand, 2)|pci.CommandMemory|pci.CommandBusMaster|pci.CommandINTxDisable)
	d.setupMSIX()
	return d
}

// sizeBARs finds each memory BAR's address and checks the sizing protocol
// as Linux runs it: decoding off, all ones written, the mask read, the
// value restored.
func (d *PCIDriver) sizeBARs() {
	cmd := d.ConfigRead(pci.RegCommand, 2)
	d.ConfigWrite(pci.RegCommand, 2, cmd&^pci.CommandMemory)
	for i := 0; i < pci.NumBARs; i++ {
		reg := pci.RegBAR0 + 4*i
		lo := d.ConfigRead(reg, 4)
		d.ConfigWrite(reg, 4, 0xffff_ffff)
		mask := uint64(d.ConfigRead(reg, 4))
		d.ConfigWrite(reg, 4, lo)
		if mask == 0 || lo&1 != 0 {
			continue
		}
		addr := uint64(lo &^ 0xf)
		is64 := lo&0x6 == 0x4
		if is64 {
			hi := d.ConfigRead(reg+4, 4)
			d.ConfigWrite(reg+4, 4, 0xffff_ffff)
			mask |= uint64(d.ConfigRead(reg+4, 4)) << 32
			d.ConfigWrite(reg+4, 4, hi)
			addr |= uint64(hi) << 32
		} else {
			mask |= 0xffff_ffff_0000_0000
		}
		size := ^(mask &^ 0xf) + 1
		if addr == 0 || addr%size != 0 {
			d.t.Fatalf("slot %d BAR %d at %#x of size %#x: not assigned or misaligned", d.slot, i, addr, size)
		}
		d.layout.BARs[i] = addr
		if is64 {
			i++
		}
	}
	d.ConfigWrite(pci.RegCommand, 2, cmd)
}

// walkCapabilities locates the first capability of each virtio cfg_type
// and MSI-X, checking each lies inside a BAR the driver found.
func (d *PCIDriver) walkCapabilities() {
	if d.ConfigRead(pci.RegStatus, 2)&pci.StatusCapabilities == 0 {
		d.t.Fatalf("slot %d has no capability list", d.slot)
	}
	found := map[uint32]bool{}
	ptr := int(d.ConfigRead(pci.RegCapabilities, 1) &^ 3)
	for n := 0; ptr != 0; n++ {
		if n > 48 || ptr < 0x40 {
			d.t.Fatalf("slot %d: capability list loops or points into the header (%#x)", d.slot, ptr)
		}
		switch d.ConfigRead(ptr, 1) {
		case pciCapVendor:
			typ := d.ConfigRead(ptr+3, 1)
			if found[typ] {
				break
			}
			found[typ] = true
			bar := int(d.ConfigRead(ptr+4, 1))
			off := uint64(d.ConfigRead(ptr+8, 4))
			length := d.ConfigRead(ptr+12, 4)
			if bar >= pci.NumBARs || d.layout.BARs[bar] == 0 {
				d.t.Fatalf("slot %d: virtio capability type %d in BAR %d, which is not a memory BAR", d.slot, typ, bar)
			}
			addr := d.layout.BARs[bar] + off
			switch typ {
			case pciCfgCommon:
				d.layout.Common, d.layout.CommonLen = addr, length
			case pciCfgNotify:
				d.layout.Notify, d.layout.NotifyLen = addr, length
				d.layout.NotifyMultiplier = d.ConfigRead(ptr+16, 4)
			case pciCfgISR:
				d.layout.ISR, d.layout.ISRLen = addr, length
			case pciCfgDevice:
				d.layout.Device, d.layout.DeviceLen = addr, length
			}
		case pciCapMSIX:
			d.layout.MSIXCap = ptr
			d.layout.MSIXVectors = int(d.ConfigRead(ptr+2, 2)&0x7ff) + 1
			table := d.ConfigRead(ptr+4, 4)
			pba := d.ConfigRead(ptr+8, 4)
			if table&7 >= pci.NumBARs || pba&7 >= pci.NumBARs || d.layout.BARs[table&7] == 0 || d.layout.BARs[pba&7] == 0 {
				d.t.Fatalf("slot %d: MSI-X table or PBA in a BAR that is not a memory BAR", d.slot)
			}
			d.layout.MSIXTable = d.layout.BARs[table&7] + uint64(table&^7)
			d.layout.MSIXPBA = d.layout.BARs[pba&7] + uint64(pba&^7)
		}
		ptr = int(d.ConfigRead(ptr+1, 1) &^ 3)
	}
	switch {
	case d.layout.Common == 0 || d.layout.CommonLen < 0x38:
		d.t.Fatalf("slot %d: no usable common configuration", d.slot)
	case d.layout.ISR == 0 || d.layout.ISRLen < 1:
		d.t.Fatalf("slot %d: no ISR", d.slot)
	case d.layout.Notify == 0:
		d.t.Fatalf("slot %d: no notify area", d.slot)
	case d.layout.MSIXCap == 0:
		d.t.Fatalf("slot %d: no MSI-X", d.slot)
	}
}

// setupMSIX enables MSI-X the way Linux's msix_capability_init does:
// enable with the function masked, mask every vector, program the
// messages, clear the function mask; then unmask the vectors, as
// request_irq does.
func (d *PCIDriver) setupMSIX() {
	d.SetMSIXControl(true, true)
	for v := range d.layout.MSIXVectors {
		e := d.layout.MSIXTable + uint64(v)*msixEntrySize
		d.WriteMMIO(e+12, 4, 1)
		addr, data := MSIMessage(v)
		d.WriteMMIO(e, 4, addr&0xffff_ffff)
		d.WriteMMIO(e+4, 4, addr>>32)
		d.WriteMMIO(e+8, 4, uint64(data))
	}
	d.SetMSIXControl(true, false)
	for v := range d.layout.MSIXVectors {
		d.MaskVector(v, false)
	}
}

// DeviceFeatures reads the features the device offers.
func (d *PCIDriver) DeviceFeatures() uint64 {
	d.WriteMMIO(d.layout.Common+commonDFSelect, 4, 0)
	lo := d.ReadMMIO(d.layout.Common+commonDF, 4)
	d.WriteMMIO(d.layout.Common+commonDFSelect, 4, 1)
	hi := d.ReadMMIO(d.layout.Common+commonDF, 4)
	return hi<<32 | lo
}

// Negotiate resets the device, sets ACKNOWLEDGE and DRIVER, writes exactly
// features and sets FEATURES_OK, and reports whether FEATURES_OK stuck.
func (d *PCIDriver) Negotiate(features uint64) bool {
	d.Reset()
	d.SetStatus(virtio.StatusAcknowledge)
	d.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	d.WriteMMIO(d.layout.Common+commonGFSelect, 4, 0)
	d.WriteMMIO(d.layout.Common+commonGF, 4, features&0xffff_ffff)
	d.WriteMMIO(d.layout.Common+commonGFSelect, 4, 1)
	d.WriteMMIO(d.layout.Common+commonGF, 4, features>>32)
	d.SetStatus(d.Status() | virtio.StatusFeaturesOK)
	if d.Status()&virtio.StatusFeaturesOK == 0 {
		return false
	}
	d.features = features
	return true
}

// SetupQueues lays out every queue the device has in guest memory, at the
// size it offers or maxSize if that is smaller (0: no limit), gives queue
// q vector PCIQueueVector(q) and config changes PCIConfigVector, and
// enables the queues.
func (d *PCIDriver) SetupQueues(maxSize uint16) {
	c := d.layout.Common
	n := int(d.ReadMMIO(c+commonNumQ, 2))
	d.queues = make([]*Queue, n)
	d.notifyOff = make([]uint16, n)
	for q := range n {
		d.WriteMMIO(c+commonQSelect, 2, uint64(q))
		size := uint16(d.ReadMMIO(c+commonQSize, 2))
		if size == 0 || size&(size-1) != 0 {
			d.t.Fatalf("queue %d: bad size %d", q, size)
		}
		if d.ReadMMIO(c+commonQEnable, 2) != 0 {
			d.t.Fatalf("queue %d: enabled before setup", q)
		}
		if maxSize != 0 && maxSize < size {
			size = maxSize
		}
		d.WriteMMIO(c+commonQSize, 2, uint64(size))
		vq := NewQueue(d.mem, d.alloc, size)
		for _, f := range []struct {
			reg  uint64
			addr uint64
		}{{commonQDesc, vq.Config.Desc}, {commonQDriver, vq.Config.Avail}, {commonQDevice, vq.Config.Used}} {
			// As Linux's vp_iowrite64_twopart: low half, then high.
			d.WriteMMIO(c+f.reg, 4, f.addr&0xffff_ffff)
			d.WriteMMIO(c+f.reg+4, 4, f.addr>>32)
		}
		if got := d.SetQueueVector(q, uint16(PCIQueueVector(q))); got != uint16(PCIQueueVector(q)) {
			d.t.Fatalf("queue %d: vector %d did not stick (reads %#x)", q, PCIQueueVector(q), got)
		}
		d.notifyOff[q] = uint16(d.ReadMMIO(c+commonQNotifyOff, 2))
		if uint64(d.notifyOff[q])*uint64(d.layout.NotifyMultiplier)+2 > uint64(d.layout.NotifyLen) {
			d.t.Fatalf("queue %d: notify offset %d outside the notify area", q, d.notifyOff[q])
		}
		d.queues[q] = vq
	}
	if got := d.SetConfigVector(PCIConfigVector); got != PCIConfigVector {
		d.t.Fatalf("config vector did not stick (reads %#x)", got)
	}
	for q := range n {
		d.WriteMMIO(c+commonQSelect, 2, uint64(q))
		d.WriteMMIO(c+commonQEnable, 2, 1)
	}
}

// DriverOK sets DRIVER_OK: the device goes live.
func (d *PCIDriver) DriverOK() { d.SetStatus(d.Status() | virtio.StatusDriverOK) }

// Features are the features Negotiate got accepted.
func (d *PCIDriver) Features() uint64 { return d.features }

// NumQueues is the number of queues SetupQueues set up.
func (d *PCIDriver) NumQueues() int { return len(d.queues) }

// Queue is the driver side of queue q.
func (d *PCIDriver) Queue(q int) *Queue { return d.queues[q] }

// Notify kicks queue q: its index written to its notify address.
func (d *PCIDriver) Notify(q int) {
	d.WriteMMIO(d.layout.Notify+uint64(d.notifyOff[q])*uint64(d.layout.NotifyMultiplier), 2, uint64(q))
}

// ReadConfig reads the device configuration at offset, len(data) bytes in
// one access.
func (d *PCIDriver) ReadConfig(offset uint64, data []byte) {
	d.mmio(false, d.layout.Device+offset, data)
}

// WriteConfig writes the device configuration at offset in one access.
func (d *PCIDriver) WriteConfig(offset uint64, data []byte) {
	d.mmio(true, d.layout.Device+offset, data)
}

// Status reads device_status.
func (d *PCIDriver) Status() uint8 { return uint8(d.ReadMMIO(d.layout.Common+commonStatus, 1)) }

// SetStatus writes device_status.
func (d *PCIDriver) SetStatus(s uint8) { d.WriteMMIO(d.layout.Common+commonStatus, 1, uint64(s)) }

// Reset writes 0 to device_status and checks that it reads back 0, as it
// must once the device has stopped (Linux polls; this transport is
// synchronous). The queues are gone afterwards.
func (d *PCIDriver) Reset() {
	d.SetStatus(0)
	if s := d.Status(); s != 0 {
		d.t.Fatalf("status %#x after reset", s)
	}
	d.queues, d.notifyOff, d.features = nil, nil, 0
}

// ConfigGeneration reads config_generation.
func (d *PCIDriver) ConfigGeneration() uint8 {
	return uint8(d.ReadMMIO(d.layout.Common+commonGeneration, 1))
}

// ISR reads (and so clears) the ISR status.
func (d *PCIDriver) ISR() uint8 { return uint8(d.ReadMMIO(d.layout.ISR, 1)) }

// SetQueueVector assigns MSI-X vector v to queue q and returns what reads
// back (0xffff: refused).
func (d *PCIDriver) SetQueueVector(q int, v uint16) uint16 {
	d.WriteMMIO(d.layout.Common+commonQSelect, 2, uint64(q))
	d.WriteMMIO(d.layout.Common+commonQMSIX, 2, uint64(v))
	return uint16(d.ReadMMIO(d.layout.Common+commonQMSIX, 2))
}

// SetConfigVector assigns MSI-X vector v to config changes and returns
// what reads back (0xffff: refused).
func (d *PCIDriver) SetConfigVector(v uint16) uint16 {
	d.WriteMMIO(d.layout.Common+commonMSIX, 2, uint64(v))
	return uint16(d.ReadMMIO(d.layout.Common+commonMSIX, 2))
}

// MaskVector sets or clears the mask bit of MSI-X vector v.
func (d *PCIDriver) MaskVector(v int, masked bool) {
	var ctrl uint64
	if masked {
		ctrl = 1
	}
	d.WriteMMIO(d.layout.MSIXTable+uint64(v)*msixEntrySize+12, 4, ctrl)
}

// SetMSIXControl writes the MSI-X enable and function mask bits.
func (d *PCIDriver) SetMSIXControl(enable, functionMask bool) {
	ctrl := d.ConfigRead(d.layout.MSIXCap+2, 2) &^ (pci.MSIXEnable | pci.MSIXFunctionMask)
	if enable {
		ctrl |= pci.MSIXEnable
	}
	if functionMask {
		ctrl |= pci.MSIXFunctionMask
	}
	d.ConfigWrite(d.layout.MSIXCap+2, 2, ctrl)
}

// MSIXPending reads the pending bit of vector v from the PBA.
func (d *PCIDriver) MSIXPending(v int) bool {
	return d.ReadMMIO(d.layout.MSIXPBA+uint64(v/64)*8, 8)&(1<<(v%64)) != 0
}

// Layout is where the device's structures are.
func (d *PCIDriver) Layout() PCILayout { return d.layout }

// ConfigRead reads n (1, 2 or 4) bytes of the device's config space at
// reg through configuration mechanism 1.
func (d *PCIDriver) ConfigRead(reg, n int) uint32 {
	d.conf.Lock()
	defer d.conf.Unlock()
	d.port(true, pci.ConfigAddressPort, d.confAddress(reg), 4)
	return d.port(false, uint16(pci.ConfigDataPort+reg&3), 0, n)
}

// ConfigWrite writes n (1, 2 or 4) bytes of config space at reg.
func (d *PCIDriver) ConfigWrite(reg, n int, v uint32) {
	d.conf.Lock()
	defer d.conf.Unlock()
	d.port(true, pci.ConfigAddressPort, d.confAddress(reg), 4)
	d.port(true, uint16(pci.ConfigDataPort+reg&3), v, n)
}

func (d *PCIDriver) confAddress(reg int) uint32 {
	return 1<<31 | uint32(d.slot)<<11 | uint32(reg&0xfc)
}

// port does one port access; for a write, v is the value, for a read the
// result is returned.
func (d *PCIDriver) port(write bool, port uint16, v uint32, n int) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	var err error
	if write {
		err = d.bus.WritePort(port-pci.ConfigAddressPort, b[:n])
	} else {
		err = d.bus.ReadPort(port-pci.ConfigAddressPort, b[:n])
	}
	if err != nil {
		// Errorf, not Fatalf: this may run on a goroutine of the test.
		d.t.Errorf("port %#x: %v", port, err)
	}
	return binary.LittleEndian.Uint32(b[:])
}

// ReadMMIO loads n (1, 2, 4 or 8) bytes at guest-physical addr.
func (d *PCIDriver) ReadMMIO(addr uint64, n int) uint64 {
	var b [8]byte
	d.mmio(false, addr, b[:n])
	return binary.LittleEndian.Uint64(b[:])
}

// WriteMMIO stores the low n bytes of v at guest-physical addr.
func (d *PCIDriver) WriteMMIO(addr uint64, n int, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	d.mmio(true, addr, b[:n])
}

func (d *PCIDriver) mmio(write bool, addr uint64, data []byte) {
	var err error
	if write {
		err = d.bus.MMIO().WriteMMIO(addr-d.base, data)
	} else {
		err = d.bus.MMIO().ReadMMIO(addr-d.base, data)
	}
	if err != nil {
		d.t.Errorf("MMIO %#x: %v", addr, err)
	}
}

// MSI is one message a device sent.
type MSI struct {
	Addr uint64
	Data uint32
}

// MSIRecorder is a pci.MSISender that records every message, for tests
// to count and wait on by vector (see MSIMessage).
type MSIRecorder struct {
	mu   sync.Mutex
	sent []MSI
	// waited counts, per message, the signals Wait has consumed.
	waited map[MSI]int
	// changed is closed and replaced on every message.
	changed chan struct{}
}

// NewMSIRecorder returns an empty recorder.
func NewMSIRecorder() *MSIRecorder {
	return &MSIRecorder{waited: map[MSI]int{}, changed: make(chan struct{})}
}

// SignalMSI records the message.
func (r *MSIRecorder) SignalMSI(addr uint64, data uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, MSI{addr, data})
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

// Sent returns every message so far, in order.
func (r *MSIRecorder) Sent() []MSI {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]MSI(nil), r.sent...)
}

// Count is how many times vector v has been signalled.
func (r *MSIRecorder) Count(v int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.countLocked(msiOf(v))
}

func (r *MSIRecorder) countLocked(m MSI) int {
	n := 0
	for _, s := range r.sent {
		if s == m {
			n++
		}
	}
	return n
}

func msiOf(v int) MSI {
	addr, data := MSIMessage(v)
	return MSI{addr, data}
}

// Wait blocks until vector v has a signal that no earlier Wait for v
// consumed, and consumes it; it fails the test after timeout.
func (r *MSIRecorder) Wait(t testing.TB, v int, timeout time.Duration) {
	t.Helper()
	m := msiOf(v)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		if r.countLocked(m) > r.waited[m] {
			r.waited[m]++
			r.mu.Unlock()
			return
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no MSI-X signal of vector %d within %v (sent so far: %v)", v, timeout, r.Sent())
		}
	}
}
