package pci

import (
	"encoding/binary"
	"sync"
	"testing"
)

const (
	testBase = 0xc000_0000
	testSize = 0xfec0_0000 - testBase
)

// memDevice is a function whose BARs are plain memory, recording which BAR
// each access reached.
type memDevice struct {
	cfg  *ConfigSpace
	mu   sync.Mutex
	bars [NumBARs][]byte
	hits [NumBARs]int
}

// newMemDevice makes a device with the given BAR sizes (0: none); BARs in
// wide64 are 64-bit.
func newMemDevice(t *testing.T, id uint16, sizes map[int]uint64, wide64 map[int]bool) *memDevice {
	t.Helper()
	d := &memDevice{cfg: NewConfigSpace(Header{VendorID: 0x1234, DeviceID: id, Revision: 3, Class: 0xff0000})}
	for bar, size := range sizes {
		if err := d.cfg.AddMemoryBAR(bar, size, wide64[bar]); err != nil {
			t.Fatal(err)
		}
		d.bars[bar] = make([]byte, min(size, 1<<16))
	}
	return d
}

func (d *memDevice) Config() *ConfigSpace { return d.cfg }

func (d *memDevice) ReadBAR(bar int, off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hits[bar]++
	if off+uint64(len(data)) > uint64(len(d.bars[bar])) {
		fill(data)
		return
	}
	copy(data, d.bars[bar][off:])
}

func (d *memDevice) WriteBAR(bar int, off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hits[bar]++
	if off+uint64(len(data)) <= uint64(len(d.bars[bar])) {
		copy(d.bars[bar][off:], data)
	}
}

// guest drives the bus the way a kernel does: port I/O at 0xCF8–0xCFF and
// loads and stores in the MMIO window.
type guest struct {
	t *testing.T
	b *Bus
}

func newGuest(t *testing.T) *guest {
	t.Helper()
	b, err := NewBus(testBase, testSize)
	if err != nil {
		t.Fatal(err)
	}
	return &guest{t, b}
}

func (g *guest) add(d Device) int {
	g.t.Helper()
	slot, err := g.b.Add(d)
	if err != nil {
		g.t.Fatal(err)
	}
	return slot
}

func (g *guest) in(port uint16, n int) uint32 {
	g.t.Helper()
	data := make([]byte, n)
	if err := g.b.ReadPort(port-ConfigAddressPort, data); err != nil {
		g.t.Fatal(err)
	}
	var b [4]byte
	copy(b[:], data)
	return binary.LittleEndian.Uint32(b[:])
}

func (g *guest) out(port uint16, n int, v uint32) {
	g.t.Helper()
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	if err := g.b.WritePort(port-ConfigAddressPort, b[:n]); err != nil {
		g.t.Fatal(err)
	}
}

func confAddr(slot, fn, reg int) uint32 {
	return 0x8000_0000 | uint32(slot)<<11 | uint32(fn)<<8 | uint32(reg&0xfc)
}

// cfgRead is Linux's pci_conf1_read for bus 0.
func (g *guest) cfgRead(slot, reg, n int) uint32 {
	g.t.Helper()
	g.out(0xcf8, 4, confAddr(slot, 0, reg))
	return g.in(uint16(0xcfc+reg&3), n)
}

// cfgWrite is Linux's pci_conf1_write for bus 0.
func (g *guest) cfgWrite(slot, reg, n int, v uint32) {
	g.t.Helper()
	g.out(0xcf8, 4, confAddr(slot, 0, reg))
	g.out(uint16(0xcfc+reg&3), n, v)
}

func (g *guest) load(addr uint64, n int) uint64 {
	g.t.Helper()
	data := make([]byte, n)
	if err := g.b.MMIO().ReadMMIO(addr-testBase, data); err != nil {
		g.t.Fatal(err)
	}
	var b [8]byte
	copy(b[:], data)
	return binary.LittleEndian.Uint64(b[:])
}

func (g *guest) store(addr uint64, n int, v uint64) {
	g.t.Helper()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	if err := g.b.MMIO().WriteMMIO(addr-testBase, b[:n]); err != nil {
		g.t.Fatal(err)
	}
}

// barAddr reads BAR bar of slot as the guest sees it.
func (g *guest) barAddr(slot, bar int) uint64 {
	lo := g.cfgRead(slot, RegBAR0+4*bar, 4)
	addr := uint64(lo &^ 0xf)
	if lo&0x6 == barMem64 {
		addr |= uint64(g.cfgRead(slot, RegBAR0+4*bar+4, 4)) << 32
	}
	return addr
}

func TestLinuxConf1ProbeSeesAWorkingMechanismAndAHostBridge(t *testing.T) {
	g := newGuest(t)
	// pci_check_type1: a byte to 0xCFB, then the address register must
	// hold exactly what was written.
	g.out(0xcfb, 1, 0x01)
	saved := g.in(0xcf8, 4)
	g.out(0xcf8, 4, 0x8000_0000)
	if got := g.in(0xcf8, 4); got != 0x8000_0000 {
		t.Fatalf("CONFIG_ADDRESS reads %#x after writing 0x80000000", got)
	}
	// pci_sanity_check: a host bridge class somewhere on bus 0.
	found := false
	for devfn := range 256 {
		g.out(0xcf8, 4, 0x8000_0000|uint32(devfn)<<8|0x08)
		if g.in(0xcfe, 2) == 0x0600 {
			found = true
			break
		}
	}
	if !found {
		t.Fatal("no host bridge class on bus 0")
	}
	g.out(0xcf8, 4, saved)
	if got := g.in(0xcf8, 4); got != saved {
		t.Fatalf("CONFIG_ADDRESS reads %#x after restoring %#x", got, saved)
	}
}

func TestOnlyDwordAccessesAtCF8ReachTheAddressRegister(t *testing.T) {
	g := newGuest(t)
	g.out(0xcf8, 4, confAddr(0, 0, 0))
	for _, a := range []struct {
		port uint16
		n    int
	}{{0xcf8, 1}, {0xcf9, 1}, {0xcfa, 1}, {0xcfb, 1}, {0xcf8, 2}, {0xcfa, 2}} {
		g.out(a.port, a.n, 0)
		if got := g.in(a.port, a.n); got != 1<<(8*a.n)-1 {
			t.Errorf("%d-byte read of %#x = %#x, want all ones", a.n, a.port, got)
		}
	}
	if got := g.in(0xcf8, 4); got != confAddr(0, 0, 0) {
		t.Fatalf("CONFIG_ADDRESS changed to %#x by narrow accesses", got)
	}
}

func TestAddressRegisterKeepsOnlyDefinedBits(t *testing.T) {
	g := newGuest(t)
	g.out(0xcf8, 4, 0xffff_ffff)
	if got, want := g.in(0xcf8, 4), uint32(0x8fff_fffc); got != want {
		t.Fatalf("CONFIG_ADDRESS = %#x, want %#x", got, want)
	}
}

func TestEnumerationFindsEachDeviceAndEmptySlotsReadAllOnes(t *testing.T) {
	g := newGuest(t)
	a := g.add(newMemDevice(t, 0xaaaa, nil, nil))
	b := g.add(newMemDevice(t, 0xbbbb, nil, nil))
	if a != 1 || b != 2 {
		t.Fatalf("devices went to slots %d and %d, want 1 and 2", a, b)
	}
	tests := []struct {
		slot      int
		id        uint32
		classRev  uint32
		headerTyp uint32
	}{
		{0, hostBridgeDevice<<16 | hostBridgeVendor, classHostBridge << 8, 0},
		{1, 0xaaaa<<16 | 0x1234, 0xff0000<<8 | 3, 0},
		{2, 0xbbbb<<16 | 0x1234, 0xff0000<<8 | 3, 0},
		{3, 0xffff_ffff, 0xffff_ffff, 0xff},
		{31, 0xffff_ffff, 0xffff_ffff, 0xff},
	}
	for _, tt := range tests {
		if got := g.cfgRead(tt.slot, RegVendorID, 4); got != tt.id {
			t.Errorf("slot %d: vendor/device %#x, want %#x", tt.slot, got, tt.id)
		}
		if got := g.cfgRead(tt.slot, RegRevision, 4); got != tt.classRev {
			t.Errorf("slot %d: class/revision %#x, want %#x", tt.slot, got, tt.classRev)
		}
		if got := g.cfgRead(tt.slot, RegHeaderType, 1); got != tt.headerTyp {
			t.Errorf("slot %d: header type %#x, want %#x", tt.slot, got, tt.headerTyp)
		}
		if tt.id != 0xffff_ffff {
			if got := g.cfgRead(tt.slot, RegInterruptPin, 1); got != 0 {
				t.Errorf("slot %d: interrupt pin %d, want 0 (no INTx)", tt.slot, got)
			}
		}
	}
}

func TestOnlyBusZeroFunctionZeroWithMechanismEnabledAnswers(t *testing.T) {
	g := newGuest(t)
	g.add(newMemDevice(t, 0xaaaa, nil, nil))
	tests := []struct {
		name string
		addr uint32
	}{
		{"enable bit clear", confAddr(1, 0, 0) &^ addrEnable},
		{"function 1", confAddr(1, 1, 0)},
		{"function 7", confAddr(1, 7, 0)},
		{"bus 1", confAddr(1, 0, 0) | 1<<16},
		{"extended register", confAddr(1, 0, 0) | 1<<24},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.t = t
			g.out(0xcf8, 4, tt.addr)
			if got := g.in(0xcfc, 4); got != 0xffff_ffff {
				t.Fatalf("read %#x, want all ones", got)
			}
			g.out(0xcfc, 4, 0) // must go nowhere
		})
	}
	g.t = t
	if got := g.cfgRead(1, RegVendorID, 4); got != 0xaaaa<<16|0x1234 {
		t.Fatalf("device id damaged by ignored writes: %#x", got)
	}
}

func TestDataPortByteAndWordAccessesAtEveryOffsetCompose(t *testing.T) {
	g := newGuest(t)
	slot := g.add(newMemDevice(t, 0xbeef, nil, nil))
	want := g.cfgRead(slot, 0, 4)
	for reg := range 4 {
		if got := g.cfgRead(slot, reg, 1); got != want>>(8*reg)&0xff {
			t.Errorf("byte %d = %#x, want %#x", reg, got, want>>(8*reg)&0xff)
		}
	}
	for _, reg := range []int{0, 1, 2} {
		if got := g.cfgRead(slot, reg, 2); got != want>>(8*reg)&0xffff {
			t.Errorf("word at %d = %#x, want %#x", reg, got, want>>(8*reg)&0xffff)
		}
	}
	// An access running past 0xCFF is not the mechanism's.
	g.out(0xcf8, 4, confAddr(slot, 0, 0))
	if got := g.in(0xcfe, 4); got != 0xffff_ffff {
		t.Fatalf("dword at 0xCFE = %#x, want all ones", got)
	}
}

func TestBARsAreAssignedNaturallyAlignedInsideTheWindow(t *testing.T) {
	g := newGuest(t)
	a := newMemDevice(t, 1, map[int]uint64{0: 0x1000, 2: 0x10000}, map[int]bool{2: true})
	b := newMemDevice(t, 2, map[int]uint64{1: 0x100000, 5: 0x20}, nil)
	sa, sb := g.add(a), g.add(b)
	var ranges [][2]uint64
	for _, c := range []struct {
		slot, bar int
		size      uint64
	}{{sa, 0, 0x1000}, {sa, 2, 0x10000}, {sb, 1, 0x100000}, {sb, 5, 0x20}} {
		addr := g.barAddr(c.slot, c.bar)
		if addr < testBase || addr+c.size > testBase+testSize {
			t.Errorf("slot %d BAR %d at %#x is outside the window", c.slot, c.bar, addr)
		}
		if addr%c.size != 0 {
			t.Errorf("slot %d BAR %d at %#x is not aligned to its size %#x", c.slot, c.bar, addr, c.size)
		}
		for _, r := range ranges {
			if addr < r[1] && r[0] < addr+c.size {
				t.Errorf("slot %d BAR %d at %#x overlaps [%#x, %#x)", c.slot, c.bar, addr, r[0], r[1])
			}
		}
		ranges = append(ranges, [2]uint64{addr, addr + c.size})
	}
	if got := g.cfgRead(sa, RegBAR0+4*2, 4) & 0xf; got != barMem64 {
		t.Errorf("64-bit BAR flags %#x, want %#x", got, barMem64)
	}
	if got := g.cfgRead(sa, RegBAR0+4*1, 4); got != 0 {
		t.Errorf("unused BAR 1 reads %#x, want 0", got)
	}
}

func TestBARSizingProtocolReadsTheSizeMaskAndRestores(t *testing.T) {
	g := newGuest(t)
	slot := g.add(newMemDevice(t, 1, map[int]uint64{0: 0x4000, 2: 0x8000, 4: 0x1000}, map[int]bool{2: true}))
	tests := []struct {
		name     string
		reg      int
		wantMask uint32
	}{
		{"32-bit BAR", RegBAR0, 0xffff_c000},
		{"64-bit BAR low", RegBAR0 + 8, 0xffff_8000 | barMem64},
		{"64-bit BAR high", RegBAR0 + 12, 0xffff_ffff},
		{"32-bit BAR 4", RegBAR0 + 16, 0xffff_f000},
		{"unimplemented BAR", RegBAR0 + 4, 0},
		{"expansion ROM", RegROM, 0},
	}
	for _, tt := range tests {
		orig := g.cfgRead(slot, tt.reg, 4)
		g.cfgWrite(slot, tt.reg, 4, 0xffff_ffff)
		if got := g.cfgRead(slot, tt.reg, 4); got != tt.wantMask {
			t.Errorf("%s: sizing reads %#x, want %#x", tt.name, got, tt.wantMask)
		}
		g.cfgWrite(slot, tt.reg, 4, orig)
		if got := g.cfgRead(slot, tt.reg, 4); got != orig {
			t.Errorf("%s: restore reads %#x, want %#x", tt.name, got, orig)
		}
	}
}

func TestMMIODispatchFollowsMemoryEnableAndRelocation(t *testing.T) {
	g := newGuest(t)
	d := newMemDevice(t, 1, map[int]uint64{0: 0x1000, 2: 0x4000}, map[int]bool{2: true})
	slot := g.add(d)
	bar0, bar2 := g.barAddr(slot, 0), g.barAddr(slot, 2)

	g.store(bar0+8, 4, 0x1234_5678)
	if got := g.load(bar0+8, 4); got != 0xffff_ffff {
		t.Fatalf("read with memory space disabled = %#x, want all ones", got)
	}
	if d.hits[0] != 0 {
		t.Fatal("device saw accesses while memory space was disabled")
	}

	g.cfgWrite(slot, RegCommand, 2, CommandMemory)
	g.store(bar0+8, 4, 0x1234_5678)
	g.store(bar2+0x10, 8, 0x1122_3344_5566_7788)
	if got := g.load(bar0+8, 4); got != 0x1234_5678 {
		t.Fatalf("BAR 0 read %#x", got)
	}
	if got := g.load(bar2+0x10, 8); got != 0x1122_3344_5566_7788 {
		t.Fatalf("BAR 2 read %#x", got)
	}

	// The guest moves both BARs (decode off while it does, as Linux).
	g.cfgWrite(slot, RegCommand, 2, 0)
	newBar0 := uint64(0xd000_0000)
	newBar2 := uint64(0xd010_0000)
	g.cfgWrite(slot, RegBAR0, 4, uint32(newBar0))
	g.cfgWrite(slot, RegBAR0+8, 4, uint32(newBar2))
	g.cfgWrite(slot, RegBAR0+12, 4, 0)
	g.cfgWrite(slot, RegCommand, 2, CommandMemory)
	if got := g.load(bar0+8, 4); got != 0xffff_ffff {
		t.Fatalf("old BAR 0 address still decodes: %#x", got)
	}
	if got := g.load(newBar0+8, 4); got != 0x1234_5678 {
		t.Fatalf("moved BAR 0 read %#x", got)
	}
	if got := g.load(newBar2+0x10, 8); got != 0x1122_3344_5566_7788 {
		t.Fatalf("moved BAR 2 read %#x", got)
	}
}

func TestAccessesSpanningOrMissingBARsReadAllOnes(t *testing.T) {
	g := newGuest(t)
	d := newMemDevice(t, 1, map[int]uint64{0: 0x1000, 1: 0x1000}, nil)
	slot := g.add(d)
	g.cfgWrite(slot, RegCommand, 2, CommandMemory)
	bar0 := g.barAddr(slot, 0)
	tests := []struct {
		name string
		off  uint64
		n    int
	}{
		{"across two BARs", bar0 + 0xffc - testBase, 8},
		{"unassigned window space", testSize - 0x1000, 4},
		{"past the window", testSize - 2, 4},
		{"far past the window", 1 << 63, 4},
		{"empty access", 0, 0},
	}
	for _, tt := range tests {
		data := make([]byte, tt.n)
		if err := g.b.MMIO().ReadMMIO(tt.off, data); err != nil {
			t.Errorf("%s: read: %v", tt.name, err)
		}
		for _, v := range data {
			if v != 0xff {
				t.Errorf("%s: read % x, want all ones", tt.name, data)
				break
			}
		}
		if err := g.b.MMIO().WriteMMIO(tt.off, data); err != nil {
			t.Errorf("%s: write: %v", tt.name, err)
		}
	}
	if d.hits[0]+d.hits[1] != 0 {
		t.Fatalf("device saw %d accesses it does not decode", d.hits[0]+d.hits[1])
	}
}

func TestAddFailsCleanlyWhenTheWindowOrTheSlotsRunOut(t *testing.T) {
	b, err := NewBus(testBase, 0x10000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(newMemDevice(t, 1, map[int]uint64{0: 0x20000}, nil)); err == nil {
		t.Fatal("a BAR bigger than the window was placed")
	}
	// The failed device took neither a slot nor window space.
	fits := newMemDevice(t, 2, map[int]uint64{0: 0x10000}, nil)
	if slot, err := b.Add(fits); err != nil || slot != 1 {
		t.Fatalf("Add = %d, %v; want slot 1", slot, err)
	}
	if _, err := b.Add(fits); err == nil {
		t.Fatal("the same device was added twice")
	}
	for i := 2; i < Slots; i++ {
		if _, err := b.Add(newMemDevice(t, uint16(i), nil, nil)); err != nil {
			t.Fatalf("slot %d: %v", i, err)
		}
	}
	if _, err := b.Add(newMemDevice(t, 99, nil, nil)); err == nil {
		t.Fatal("a 33rd device was placed")
	}
	if _, err := b.Add(nil); err == nil {
		t.Fatal("a nil device was placed")
	}
}

func TestA32BitBARIsNeverPlacedAbove4GiB(t *testing.T) {
	b, err := NewBus(0xffff_0000, 0x10_0000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(newMemDevice(t, 1, map[int]uint64{0: 0x20000}, nil)); err == nil {
		t.Fatal("a 32-bit BAR was placed across 4 GiB")
	}
	if _, err := b.Add(newMemDevice(t, 2, map[int]uint64{0: 0x20000}, map[int]bool{0: true})); err != nil {
		t.Fatalf("a 64-bit BAR above 4 GiB: %v", err)
	}
}

func TestWindowReportsItsPlace(t *testing.T) {
	g := newGuest(t)
	if w := g.b.MMIO(); w.Base() != testBase || w.Size() != testSize {
		t.Fatalf("window [%#x, +%#x), want [%#x, +%#x)", w.Base(), w.Size(), uint64(testBase), uint64(testSize))
	}
}

func TestNewBusRejectsAnEmptyOrWrappingWindow(t *testing.T) {
	for _, w := range [][2]uint64{{testBase, 0}, {^uint64(0) - 10, 100}} {
		if _, err := NewBus(w[0], w[1]); err == nil {
			t.Errorf("NewBus(%#x, %#x) succeeded", w[0], w[1])
		}
	}
}

func TestHostilePortAccessesAreHarmless(t *testing.T) {
	g := newGuest(t)
	slot := g.add(newMemDevice(t, 0xaaaa, map[int]uint64{0: 0x1000}, nil))
	before := g.cfgRead(slot, RegVendorID, 4)
	for off := uint16(0); off < Ports+4; off++ {
		for _, n := range []int{0, 1, 2, 3, 4, 8} {
			g.out(0xcf8, 4, confAddr(slot, 0, 0))
			data := make([]byte, n)
			for i := range data {
				data[i] = 0xa5
			}
			if err := g.b.WritePort(off, data); err != nil {
				t.Fatalf("write %d bytes at %d: %v", n, off, err)
			}
			if err := g.b.ReadPort(off, data); err != nil {
				t.Fatalf("read %d bytes at %d: %v", n, off, err)
			}
		}
	}
	if got := g.cfgRead(slot, RegVendorID, 4); got != before {
		t.Fatalf("vendor/device changed to %#x", got)
	}
}

// TestADecodeWindowReachesABARTheGuestMovedThere: Linux moves a rescanned
// device's 64-bit BAR above 4 GiB; a decode window there reaches it, and
// the assignment window no longer does.
func TestADecodeWindowReachesABARTheGuestMovedThere(t *testing.T) {
	g := newGuest(t)
	d := newMemDevice(t, 1, map[int]uint64{0: 0x1000}, map[int]bool{0: true})
	slot := g.add(d)
	const high = 1 << 32
	w, err := g.b.Decode(high, 1<<36)
	if err != nil {
		t.Fatal(err)
	}
	old := g.barAddr(slot, 0)
	moved := uint64(high + 0x2000)
	g.cfgWrite(slot, RegBAR0, 4, uint32(moved)|barMem64)
	g.cfgWrite(slot, RegBAR0+4, 4, uint32(moved>>32))
	g.cfgWrite(slot, RegCommand, 2, CommandMemory)
	data := make([]byte, 4)
	if err := w.ReadMMIO(0x2000+8, data); err != nil {
		t.Fatal(err)
	}
	if d.hits[0] != 1 {
		t.Fatalf("the device saw %d reads through the decode window, want 1", d.hits[0])
	}
	if err := g.b.MMIO().ReadMMIO(old-testBase, data); err != nil {
		t.Fatal(err)
	}
	if d.hits[0] != 1 {
		t.Fatal("the BAR still answers at its old address in the assignment window")
	}
	for _, bad := range [][2]uint64{{testBase, 0x1000}, {testBase - 0x1000, 0x2000}, {high, 0}, {1<<64 - 0x1000, 0x2000}} {
		if _, err := g.b.Decode(bad[0], bad[1]); err == nil {
			t.Errorf("Decode(%#x, %#x) succeeded", bad[0], bad[1])
		}
	}
}
