package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/joeyrt/joey/vmm/kvm"
)

type msg struct {
	addr uint64
	data uint32
}

// fakeSender records messages and answers with err.
type fakeSender struct {
	mu   sync.Mutex
	sent []msg
	err  error
}

func (s *fakeSender) SignalMSI(addr uint64, data uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, msg{addr, data})
	return s.err
}

func (s *fakeSender) messages() []msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]msg(nil), s.sent...)
}

// msixDevice has one 64-bit BAR 0 with the MSI-X table at 0 and the PBA at
// 0x800.
type msixDevice struct {
	cfg  *ConfigSpace
	msix *MSIX
}

const (
	msixTestTable = 0
	msixTestPBA   = 0x800
)

func newMSIXDevice(t *testing.T, vectors int, s MSISender) *msixDevice {
	t.Helper()
	d := &msixDevice{cfg: NewConfigSpace(Header{VendorID: 0x1234, DeviceID: 0x11})}
	if err := d.cfg.AddMemoryBAR(0, 0x1000, true); err != nil {
		t.Fatal(err)
	}
	var err error
	if d.msix, err = NewMSIX(d.cfg, vectors, 0, msixTestTable, msixTestPBA, s); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *msixDevice) Config() *ConfigSpace { return d.cfg }

func (d *msixDevice) ReadBAR(bar int, off uint64, data []byte) {
	if !d.msix.ReadBAR(bar, off, data) {
		fill(data)
	}
}

func (d *msixDevice) WriteBAR(bar int, off uint64, data []byte) { d.msix.WriteBAR(bar, off, data) }

// msixGuest is a guest driving one MSI-X function on a bus.
type msixGuest struct {
	*guest
	d         *msixDevice
	slot, cap int
	bar       uint64
}

func newMSIXGuest(t *testing.T, vectors int, s MSISender) *msixGuest {
	t.Helper()
	g := &msixGuest{guest: newGuest(t), d: newMSIXDevice(t, vectors, s)}
	g.slot = g.add(g.d)
	g.cfgWrite(g.slot, RegCommand, 2, CommandMemory|CommandBusMaster)
	g.bar = g.barAddr(g.slot, 0)
	for ptr := int(g.cfgRead(g.slot, RegCapabilities, 1)); ptr != 0; ptr = int(g.cfgRead(g.slot, ptr+1, 1)) {
		if g.cfgRead(g.slot, ptr, 1) == CapMSIX {
			g.cap = ptr
		}
	}
	if g.cap == 0 {
		t.Fatal("no MSI-X capability in the list")
	}
	return g
}

func (g *msixGuest) control(v uint16) { g.cfgWrite(g.slot, g.cap+2, 2, uint32(v)) }

// program writes vector v's message the way Linux does, leaving it
// masked or not.
func (g *msixGuest) program(v int, masked bool) {
	e := g.bar + msixTestTable + uint64(v)*MSIXEntrySize
	g.store(e+msixEntryCtrl, 4, msixEntryMaskBit)
	g.store(e+msixEntryAddrLo, 4, 0xfee0_0000|uint64(v)<<12)
	g.store(e+msixEntryAddrHi, 4, 0)
	g.store(e+msixEntryData, 4, 0x40+uint64(v))
	if !masked {
		g.store(e+msixEntryCtrl, 4, 0)
	}
}

func (g *msixGuest) mask(v int, masked bool) {
	var ctrl uint64
	if masked {
		ctrl = msixEntryMaskBit
	}
	g.store(g.bar+msixTestTable+uint64(v)*MSIXEntrySize+msixEntryCtrl, 4, ctrl)
}

func (g *msixGuest) pba() uint64 { return g.load(g.bar+msixTestPBA, 8) }

func vectorMsg(v int) msg { return msg{0xfee0_0000 | uint64(v)<<12, 0x40 + uint32(v)} }

func TestMSIXCapabilityDescribesTableAndPBA(t *testing.T) {
	g := newMSIXGuest(t, 5, &fakeSender{})
	if got := g.cfgRead(g.slot, g.cap+2, 2); got != 4 {
		t.Errorf("Message Control = %#x, want table size 5 (4) and everything off", got)
	}
	if got := g.cfgRead(g.slot, g.cap+4, 4); got != msixTestTable|0 {
		t.Errorf("table offset/BIR = %#x", got)
	}
	if got := g.cfgRead(g.slot, g.cap+8, 4); got != msixTestPBA|0 {
		t.Errorf("PBA offset/BIR = %#x", got)
	}
	// Only enable and function mask are writable.
	g.control(0xffff)
	if got := g.cfgRead(g.slot, g.cap+2, 2); got != MSIXEnable|MSIXFunctionMask|4 {
		t.Errorf("Message Control after writing ones = %#x", got)
	}
	for v := range 5 {
		if got := g.load(g.bar+uint64(v)*MSIXEntrySize+msixEntryCtrl, 4); got != msixEntryMaskBit {
			t.Errorf("vector %d control = %#x, want masked at reset", v, got)
		}
	}
}

func TestMSIXSignalDeliversOnlyWhenEnabledAndUnmasked(t *testing.T) {
	tests := []struct {
		name        string
		control     uint16
		vectorMask  bool
		wantSent    bool
		wantPending bool
	}{
		{"enabled and unmasked", MSIXEnable, false, true, false},
		{"vector masked", MSIXEnable, true, false, true},
		{"function masked", MSIXEnable | MSIXFunctionMask, false, false, true},
		{"disabled: INTx is not wired", 0, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &fakeSender{}
			g := newMSIXGuest(t, 3, s)
			g.control(tt.control)
			g.program(1, tt.vectorMask)
			if err := g.d.msix.Signal(1); err != nil {
				t.Fatal(err)
			}
			if got := len(s.messages()) == 1; got != tt.wantSent {
				t.Fatalf("sent %v, want sent=%v", s.messages(), tt.wantSent)
			}
			if tt.wantSent && s.messages()[0] != vectorMsg(1) {
				t.Fatalf("sent %+v, want %+v", s.messages()[0], vectorMsg(1))
			}
			if got := g.pba() == 1<<1; got != tt.wantPending {
				t.Fatalf("PBA = %#x, want pending=%v", g.pba(), tt.wantPending)
			}
		})
	}
}

func TestMaskedVectorStaysPendingUntilUnmaskedThenDeliversOnce(t *testing.T) {
	s := &fakeSender{}
	g := newMSIXGuest(t, 3, s)
	g.control(MSIXEnable)
	g.program(2, true)
	for range 3 {
		if err := g.d.msix.Signal(2); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.messages()) != 0 || g.pba() != 1<<2 {
		t.Fatalf("while masked: sent %v, PBA %#x", s.messages(), g.pba())
	}
	g.mask(2, false)
	if got := s.messages(); len(got) != 1 || got[0] != vectorMsg(2) {
		t.Fatalf("after unmask sent %v, want one %+v", got, vectorMsg(2))
	}
	if g.pba() != 0 {
		t.Fatalf("PBA %#x after delivery", g.pba())
	}
}

func TestClearingTheFunctionMaskDeliversEveryPendingUnmaskedVector(t *testing.T) {
	s := &fakeSender{}
	g := newMSIXGuest(t, 4, s)
	// Linux: enable with the function masked, program, then unmask.
	g.control(MSIXEnable | MSIXFunctionMask)
	for v := range 4 {
		g.program(v, v == 3)
	}
	for _, v := range []int{0, 1, 3} {
		if err := g.d.msix.Signal(v); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.messages()) != 0 {
		t.Fatalf("sent %v with the function masked", s.messages())
	}
	g.control(MSIXEnable)
	got := s.messages()
	if len(got) != 2 || got[0] != vectorMsg(0) || got[1] != vectorMsg(1) {
		t.Fatalf("sent %v, want vectors 0 and 1", got)
	}
	if g.pba() != 1<<3 {
		t.Fatalf("PBA %#x, want only the still-masked vector 3 pending", g.pba())
	}
}

func TestMSIBlockedAtTheLocalAPICIsNotAnError(t *testing.T) {
	s := &fakeSender{err: fmt.Errorf("KVM_SIGNAL_MSI: %w", kvm.ErrMSIBlocked)}
	g := newMSIXGuest(t, 1, s)
	g.control(MSIXEnable)
	g.program(0, false)
	if err := g.d.msix.Signal(0); err != nil {
		t.Fatalf("Signal = %v, want nil", err)
	}
}

func TestSenderFailuresAreReturnedWrapped(t *testing.T) {
	boom := errors.New("boom")
	g := newMSIXGuest(t, 1, &fakeSender{err: boom})
	g.control(MSIXEnable)
	g.program(0, false)
	if err := g.d.msix.Signal(0); !errors.Is(err, boom) {
		t.Fatalf("Signal = %v, want it to wrap %v", err, boom)
	}
}

func TestSignalOfAVectorOutsideTheTableFails(t *testing.T) {
	g := newMSIXGuest(t, 2, &fakeSender{})
	for _, v := range []int{-1, 2, 1 << 20} {
		if err := g.d.msix.Signal(v); err == nil {
			t.Errorf("Signal(%d) succeeded", v)
		}
	}
}

func TestMSIXTableAcceptsAlignedDwordsAndQwordsOnly(t *testing.T) {
	s := &fakeSender{}
	g := newMSIXGuest(t, 2, s)
	e := g.bar + msixTestTable + MSIXEntrySize // vector 1
	g.store(e, 8, 0x0000_0001_fee0_1003)
	if got := g.load(e, 8); got != 0x0000_0001_fee0_1000 {
		t.Fatalf("address = %#x, want the qword with bits 1:0 clear", got)
	}
	g.store(e+8, 8, 0xffff_ffff_0000_0041)
	if got := g.load(e+8, 4); got != 0x41 {
		t.Fatalf("data = %#x", got)
	}
	if got := g.load(e+12, 4); got != 1 {
		t.Fatalf("vector control = %#x, want only the mask bit kept", got)
	}
	before := g.load(e, 8)
	for _, a := range []struct {
		off uint64
		n   int
	}{{1, 4}, {2, 2}, {0, 1}, {4, 8}, {6, 2}, {3, 1}} {
		g.store(e+a.off, a.n, 0)
		if got, want := g.load(e+a.off, a.n), ^uint64(0)>>(64-8*a.n); got != want {
			t.Errorf("%d-byte read at +%d = %#x, want all ones", a.n, a.off, got)
		}
	}
	if got := g.load(e, 8); got != before {
		t.Fatalf("odd writes changed the entry to %#x", got)
	}
	// The PBA is read-only.
	g.store(g.bar+msixTestPBA, 8, ^uint64(0))
	if g.pba() != 0 {
		t.Fatalf("PBA written to %#x", g.pba())
	}
	if len(s.messages()) != 0 {
		t.Fatalf("sent %v", s.messages())
	}
}

func TestMSIXIgnoresAccessesOutsideItsStructures(t *testing.T) {
	d := newMSIXDevice(t, 2, &fakeSender{})
	var b [4]byte
	for _, a := range []struct {
		bar int
		off uint64
	}{{1, 0}, {0, 2 * MSIXEntrySize}, {0, msixTestPBA + 8}, {0, 1 << 40}} {
		if d.msix.ReadBAR(a.bar, a.off, b[:]) || d.msix.WriteBAR(a.bar, a.off, b[:]) {
			t.Errorf("BAR %d offset %#x claimed", a.bar, a.off)
		}
	}
	// A qword running past the end of the PBA is claimed but reads ones.
	var q [8]byte
	d2 := newMSIXDevice(t, 1, &fakeSender{})
	if !d2.msix.ReadBAR(0, msixTestPBA+4, q[:]) || binary.LittleEndian.Uint64(q[:]) != ^uint64(0) {
		t.Fatalf("qword at PBA+4 = % x", q)
	}
}

func TestNewMSIXRejectsBadLayouts(t *testing.T) {
	tests := []struct {
		name       string
		vectors    int
		bar        int
		table, pba uint64
		sender     MSISender
	}{
		{"no vectors", 0, 0, 0, 0x800, &fakeSender{}},
		{"too many vectors", 2049, 0, 0, 0x800, &fakeSender{}},
		{"no sender", 1, 0, 0, 0x800, nil},
		{"no such BAR", 1, 2, 0, 0x800, &fakeSender{}},
		{"upper half of a 64-bit BAR", 1, 1, 0, 0x800, &fakeSender{}},
		{"BAR index out of range", 1, 7, 0, 0x800, &fakeSender{}},
		{"misaligned table", 1, 0, 4, 0x800, &fakeSender{}},
		{"misaligned PBA", 1, 0, 0, 0x804, &fakeSender{}},
		{"table past the BAR", 200, 0, 0, 0x800, &fakeSender{}},
		{"PBA past the BAR", 1, 0, 0, 0x1000, &fakeSender{}},
		{"table overlapping the PBA", 4, 0, 0, 0x30, &fakeSender{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfigSpace(Header{})
			if err := c.AddMemoryBAR(0, 0x1000, true); err != nil {
				t.Fatal(err)
			}
			if _, err := NewMSIX(c, tt.vectors, tt.bar, tt.table, tt.pba, tt.sender); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
