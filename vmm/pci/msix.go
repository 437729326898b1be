package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/joeyrt/joey/vmm/kvm"
)

// MSISender delivers one message-signalled interrupt with the address and
// data the guest programmed. machine.Machine and kvm.VM implement it.
type MSISender interface {
	SignalMSI(addr uint64, data uint32) error
}

// MSI-X Message Control bits.
const (
	MSIXEnable       = 1 << 15
	MSIXFunctionMask = 1 << 14
)

// MSI-X table entry layout (PCI Local Bus 3.0 §6.8.2).
const (
	MSIXEntrySize     = 16
	msixEntryAddrLo   = 0
	msixEntryAddrHi   = 4
	msixEntryData     = 8
	msixEntryCtrl     = 12
	msixEntryMaskBit  = 1
	msixMaxVectors    = 2048
	msixCapBodyLength = 10
)

type msixEntry struct {
	addrLo, addrHi, data, ctrl uint32
}

// MSIX is the MSI-X capability of one function with its vector table and
// pending-bit array, both inside one of the function's memory BARs.
type MSIX struct {
	sender           MSISender
	bar              int
	tableOff, pbaOff uint64
	// mu guards everything below; it is held while a message is sent so
	// that a guest mask that completed is never overtaken by a delivery.
	mu             sync.Mutex
	enabled        bool
	functionMasked bool
	entries        []msixEntry
	pending        []uint64
}

// NewMSIX adds an MSI-X capability of vectors vectors to cfg, with the
// table at tableOffset and the PBA at pbaOffset of memory BAR bar (which
// cfg must already have and which must hold both). Every vector starts
// masked, as the PCI spec requires. Messages go out through sender.
func NewMSIX(cfg *ConfigSpace, vectors int, bar int, tableOffset, pbaOffset uint64, sender MSISender) (*MSIX, error) {
	if vectors < 1 || vectors > msixMaxVectors {
		return nil, fmt.Errorf("new MSI-X: %d vectors, want 1 to %d", vectors, msixMaxVectors)
	}
	if sender == nil {
		return nil, errors.New("new MSI-X: no MSI sender")
	}
	if bar < 0 || bar >= NumBARs {
		return nil, fmt.Errorf("new MSI-X: BAR %d does not exist", bar)
	}
	size, _ := cfg.barSize(bar)
	tableLen := uint64(vectors) * MSIXEntrySize
	pbaLen := uint64((vectors+63)/64) * 8
	switch {
	case size == 0:
		return nil, fmt.Errorf("new MSI-X: BAR %d is not a memory BAR of the function", bar)
	case tableOffset%8 != 0 || pbaOffset%8 != 0:
		return nil, fmt.Errorf("new MSI-X: table at %#x and PBA at %#x must be 8-byte aligned", tableOffset, pbaOffset)
	case tableOffset > size || tableLen > size-tableOffset || pbaOffset > size || pbaLen > size-pbaOffset:
		return nil, fmt.Errorf("new MSI-X: table [%#x, +%#x) or PBA [%#x, +%#x) outside the %#x bytes of BAR %d", tableOffset, tableLen, pbaOffset, pbaLen, size, bar)
	case tableOffset+tableLen > 1<<32 || pbaOffset+pbaLen > 1<<32:
		return nil, fmt.Errorf("new MSI-X: table or PBA beyond the 32-bit offsets the capability holds")
	case tableOffset < pbaOffset+pbaLen && pbaOffset < tableOffset+tableLen:
		return nil, fmt.Errorf("new MSI-X: table [%#x, +%#x) overlaps PBA [%#x, +%#x)", tableOffset, tableLen, pbaOffset, pbaLen)
	}
	m := &MSIX{
		sender:   sender,
		bar:      bar,
		tableOff: tableOffset,
		pbaOff:   pbaOffset,
		entries:  make([]msixEntry, vectors),
		pending:  make([]uint64, (vectors+63)/64),
	}
	for i := range m.entries {
		m.entries[i].ctrl = msixEntryMaskBit
	}
	var body [msixCapBodyLength]byte
	binary.LittleEndian.PutUint16(body[0:], uint16(vectors-1))
	binary.LittleEndian.PutUint32(body[2:], uint32(tableOffset)|uint32(bar))
	binary.LittleEndian.PutUint32(body[6:], uint32(pbaOffset)|uint32(bar))
	off, err := cfg.AddCapability(CapMSIX, body[:])
	if err != nil {
		return nil, fmt.Errorf("new MSI-X: %w", err)
	}
	// Only enable and function mask are writable: the high byte of
	// Message Control.
	cfg.setWritable(off+3, MSIXEnable>>8|MSIXFunctionMask>>8)
	cfg.onWrite(off+2, 2, m.setControl)
	return m, nil
}

// Vectors is the table size.
func (m *MSIX) Vectors() int { return len(m.entries) }

// Enabled reports whether the guest turned MSI-X on. While it is off the
// function would use INTx, which the VMM does not wire.
func (m *MSIX) Enabled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enabled
}

// Signal raises vector: it is delivered at once when MSI-X is enabled and
// neither the function nor the vector is masked; while masked it stays
// pending and goes out when the guest unmasks it. With MSI-X disabled the
// interrupt would go to INTx, so nothing is sent or kept pending. A message
// the guest blocks at its local APIC (kvm.ErrMSIBlocked) counts as
// delivered.
func (m *MSIX) Signal(vector int) error {
	if vector < 0 || vector >= len(m.entries) {
		return fmt.Errorf("signal MSI-X vector %d: the table has %d", vector, len(m.entries))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.enabled {
		return nil
	}
	if m.functionMasked || m.entries[vector].ctrl&msixEntryMaskBit != 0 {
		m.pending[vector/64] |= 1 << (vector % 64)
		return nil
	}
	return m.sendLocked(vector)
}

func (m *MSIX) sendLocked(vector int) error {
	e := m.entries[vector]
	addr := uint64(e.addrHi)<<32 | uint64(e.addrLo)
	err := m.sender.SignalMSI(addr, e.data)
	if err != nil && !errors.Is(err, kvm.ErrMSIBlocked) {
		return fmt.Errorf("signal MSI-X vector %d (%#x/%#x): %w", vector, addr, e.data, err)
	}
	return nil
}

// setControl follows a guest write of Message Control.
func (m *MSIX) setControl(regs []byte) {
	ctrl := binary.LittleEndian.Uint16(regs)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.enabled = ctrl&MSIXEnable != 0
	m.functionMasked = ctrl&MSIXFunctionMask != 0
	m.deliverPendingLocked()
}

// deliverPendingLocked sends every pending vector the guest has now
// unmasked. An error of the sender cannot be handed to the guest whose
// write caused the delivery: the message counts as sent, as one the
// platform drops would on hardware.
func (m *MSIX) deliverPendingLocked() {
	if !m.enabled || m.functionMasked {
		return
	}
	for v := range m.entries {
		if m.pending[v/64]&(1<<(v%64)) == 0 || m.entries[v].ctrl&msixEntryMaskBit != 0 {
			continue
		}
		m.pending[v/64] &^= 1 << (v % 64)
		_ = m.sendLocked(v)
	}
}

// ReadBAR serves a read at offset of BAR bar if it falls in the table or
// the PBA, and reports whether it did. Only aligned 4- and 8-byte reads
// are defined; other reads there see all ones.
func (m *MSIX) ReadBAR(bar int, offset uint64, data []byte) bool {
	table, ok := m.region(bar, offset)
	if !ok {
		return false
	}
	if !m.aligned(offset, len(data), table) {
		fill(data)
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if table {
		off := offset - m.tableOff
		for i := 0; i < len(data); i += 4 {
			binary.LittleEndian.PutUint32(data[i:], m.readEntryLocked(off+uint64(i)))
		}
		return true
	}
	// PBA: a 4-byte read is half of a 64-bit word.
	off := offset - m.pbaOff
	word := m.pending[off/8]
	if len(data) == 8 {
		binary.LittleEndian.PutUint64(data, word)
	} else {
		binary.LittleEndian.PutUint32(data, uint32(word>>(8*(off%8))))
	}
	return true
}

// WriteBAR serves a write at offset of BAR bar if it falls in the table or
// the PBA, and reports whether it did. The PBA is read-only; misaligned or
// odd-sized table writes are ignored.
func (m *MSIX) WriteBAR(bar int, offset uint64, data []byte) bool {
	table, ok := m.region(bar, offset)
	if !ok {
		return false
	}
	if !table || !m.aligned(offset, len(data), table) {
		return true
	}
	off := offset - m.tableOff
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := 0; i < len(data); i += 4 {
		m.writeEntryLocked(off+uint64(i), binary.LittleEndian.Uint32(data[i:]))
	}
	m.deliverPendingLocked()
	return true
}

// region tells whether offset of bar starts inside the table (table) or
// the PBA (ok && !table).
func (m *MSIX) region(bar int, offset uint64) (table, ok bool) {
	if bar != m.bar {
		return false, false
	}
	table = offset >= m.tableOff && offset-m.tableOff < m.tableLen()
	pba := offset >= m.pbaOff && offset-m.pbaOff < m.pbaLen()
	return table, table || pba
}

func (m *MSIX) tableLen() uint64 { return uint64(len(m.entries)) * MSIXEntrySize }
func (m *MSIX) pbaLen() uint64   { return uint64(len(m.pending)) * 8 }

// aligned reports whether an access of n bytes at offset is a naturally
// aligned 4- or 8-byte access that stays inside its structure (both start
// 8-byte aligned).
func (m *MSIX) aligned(offset uint64, n int, table bool) bool {
	if (n != 4 && n != 8) || offset%uint64(n) != 0 {
		return false
	}
	start, length := m.pbaOff, m.pbaLen()
	if table {
		start, length = m.tableOff, m.tableLen()
	}
	return uint64(n) <= length-(offset-start)
}

func (m *MSIX) readEntryLocked(off uint64) uint32 {
	e := &m.entries[off/MSIXEntrySize]
	switch off % MSIXEntrySize {
	case msixEntryAddrLo:
		return e.addrLo
	case msixEntryAddrHi:
		return e.addrHi
	case msixEntryData:
		return e.data
	default:
		return e.ctrl
	}
}

func (m *MSIX) writeEntryLocked(off uint64, v uint32) {
	e := &m.entries[off/MSIXEntrySize]
	switch off % MSIXEntrySize {
	case msixEntryAddrLo:
		// Bits 1:0 are reserved for dword alignment.
		e.addrLo = v &^ 3
	case msixEntryAddrHi:
		e.addrHi = v
	case msixEntryData:
		e.data = v
	default:
		// Only the mask bit is defined in Vector Control.
		e.ctrl = v & msixEntryMaskBit
	}
}
