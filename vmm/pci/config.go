package pci

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"
)

// ConfigSize is the size of a conventional PCI function's configuration
// space; there is no extended (PCIe) space.
const ConfigSize = 256

// Offsets of the type-0 header registers (PCI Local Bus 3.0 §6.1).
const (
	RegVendorID      = 0x00
	RegDeviceID      = 0x02
	RegCommand       = 0x04
	RegStatus        = 0x06
	RegRevision      = 0x08
	RegClass         = 0x09 // programming interface, subclass, base class
	RegCacheLine     = 0x0c
	RegLatency       = 0x0d
	RegHeaderType    = 0x0e
	RegBAR0          = 0x10
	RegSubsystemVID  = 0x2c
	RegSubsystemID   = 0x2e
	RegROM           = 0x30
	RegCapabilities  = 0x34
	RegInterruptLine = 0x3c
	RegInterruptPin  = 0x3d
)

// Command register bits.
const (
	CommandIO          = 1 << 0
	CommandMemory      = 1 << 1
	CommandBusMaster   = 1 << 2
	CommandINTxDisable = 1 << 10
)

// StatusCapabilities is the status bit that says the capability list at
// RegCapabilities is valid.
const StatusCapabilities = 1 << 4

// Capability IDs the VMM's devices use.
const (
	CapVendor = 0x09
	CapMSIX   = 0x11
)

// NumBARs is the number of base address registers of a type-0 header.
const NumBARs = 6

// BAR register low bits (memory BARs only: no device here decodes I/O).
const (
	barMem64    = 0x4
	barFlagBits = 0xf
)

// capStart is where capabilities go: right after the 64-byte header.
const capStart = 0x40

// commandWritable are the command bits a guest may set: no I/O BARs exist,
// so I/O decode stays off; parity and SERR reporting are kept only so that
// what the guest wrote reads back.
const commandWritable = CommandMemory | CommandBusMaster | 1<<6 | 1<<8 | CommandINTxDisable

// Header is the identity of one PCI function.
type Header struct {
	VendorID, DeviceID uint16
	Revision           uint8
	// Class is base class<<16 | subclass<<8 | programming interface,
	// e.g. 0x020000 for an Ethernet controller.
	Class                          uint32
	SubsystemVendorID, SubsystemID uint16
}

type barKind uint8

const (
	barNone barKind = iota
	barMem32
	barMem64Low
	barMem64High // the upper half of the BAR below
)

type barInfo struct {
	kind barKind
	size uint64
}

// writeHook runs after a guest write that touches [off, off+n).
type writeHook struct {
	off, n int
	fn     func(regs []byte)
}

// ConfigSpace is a type-0 configuration header with capabilities, shared
// by the VMM's PCI functions. Every register is kept as bytes with a
// per-bit write mask, so read-only fields stay read-only whatever width or
// offset the guest uses, and BAR sizing (write all ones, read the mask)
// falls out of the masks of the BAR registers. A device builds its space
// (BARs, capabilities) before it is added to a bus.
type ConfigSpace struct {
	// mu guards everything below: vCPUs access config space concurrently
	// with the bus decoding BARs.
	mu sync.Mutex
	// regs is what the guest reads; wmask marks the bits it can write.
	regs, wmask [ConfigSize]byte
	bars        [NumBARs]barInfo
	// nextCap is the first free byte for a capability; lastCap is the
	// offset of the last one in the list (0: none yet).
	nextCap, lastCap int
	hooks            []writeHook
}

// NewConfigSpace returns a header with the given identity, no BARs, no
// capabilities, interrupt pin 0 (no INTx) and everything disabled.
func NewConfigSpace(h Header) *ConfigSpace {
	c := &ConfigSpace{nextCap: capStart}
	le := binary.LittleEndian
	le.PutUint16(c.regs[RegVendorID:], h.VendorID)
	le.PutUint16(c.regs[RegDeviceID:], h.DeviceID)
	c.regs[RegRevision] = h.Revision
	c.regs[RegClass] = byte(h.Class)
	c.regs[RegClass+1] = byte(h.Class >> 8)
	c.regs[RegClass+2] = byte(h.Class >> 16)
	le.PutUint16(c.regs[RegSubsystemVID:], h.SubsystemVendorID)
	le.PutUint16(c.regs[RegSubsystemID:], h.SubsystemID)
	le.PutUint16(c.wmask[RegCommand:], commandWritable)
	// Linux writes cache line size, latency timer and interrupt line and
	// expects them to read back on conventional PCI.
	c.wmask[RegCacheLine] = 0xff
	c.wmask[RegLatency] = 0xff
	c.wmask[RegInterruptLine] = 0xff
	return c
}

// AddMemoryBAR declares BAR index as a memory BAR of size bytes (a power of
// 2 of at least 16; at most 2 GiB for a 32-bit BAR). A 64-bit BAR also
// takes register index+1. The bus assigns its address.
func (c *ConfigSpace) AddMemoryBAR(index int, size uint64, is64 bool) error {
	last := index
	if is64 {
		last++
	}
	switch {
	case index < 0 || last >= NumBARs:
		return fmt.Errorf("add BAR %d: want a BAR index of 0 to %d", index, NumBARs-1)
	case size < 16 || size&(size-1) != 0:
		return fmt.Errorf("add BAR %d: size %#x is not a power of 2 of at least 16", index, size)
	case !is64 && size > 1<<31:
		return fmt.Errorf("add BAR %d: size %#x is too big for a 32-bit BAR", index, size)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := index; i <= last; i++ {
		if c.bars[i].kind != barNone {
			return fmt.Errorf("add BAR %d: register %d is already in use", index, i)
		}
	}
	mask := ^(size - 1)
	if is64 {
		c.bars[index] = barInfo{kind: barMem64Low, size: size}
		c.bars[index+1] = barInfo{kind: barMem64High}
		c.regs[RegBAR0+4*index] = barMem64
		binary.LittleEndian.PutUint32(c.wmask[RegBAR0+4*(index+1):], uint32(mask>>32))
	} else {
		c.bars[index] = barInfo{kind: barMem32, size: size}
	}
	binary.LittleEndian.PutUint32(c.wmask[RegBAR0+4*index:], uint32(mask)&^barFlagBits)
	return nil
}

// AddCapability appends a capability with the given ID to the list; body
// is the capability after its ID and next-pointer bytes. The capability is
// read-only to the guest. It returns the capability's offset.
func (c *ConfigSpace) AddCapability(id uint8, body []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	size := (2 + len(body) + 3) &^ 3
	if size > ConfigSize-c.nextCap {
		return 0, fmt.Errorf("add capability %#x of %d bytes: only %d bytes of config space left", id, 2+len(body), ConfigSize-c.nextCap)
	}
	off := c.nextCap
	c.regs[off] = id
	c.regs[off+1] = 0
	copy(c.regs[off+2:], body)
	if c.lastCap == 0 {
		c.regs[RegCapabilities] = byte(off)
		c.regs[RegStatus] |= StatusCapabilities
	} else {
		c.regs[c.lastCap+1] = byte(off)
	}
	c.lastCap = off
	c.nextCap += size
	return off, nil
}

// setWritable lets the guest write the bits of mask in the byte at off.
func (c *ConfigSpace) setWritable(off int, mask byte) {
	c.mu.Lock()
	c.wmask[off] = mask
	c.mu.Unlock()
}

// onWrite calls fn, with the lock held, after every guest write that
// touches [off, off+n); fn gets those registers and must not call back
// into c. Holding the lock keeps the order in which fn sees values the
// order in which the guest wrote them.
func (c *ConfigSpace) onWrite(off, n int, fn func(regs []byte)) {
	c.mu.Lock()
	c.hooks = append(c.hooks, writeHook{off, n, fn})
	c.mu.Unlock()
}

// inRange reports whether [offset, offset+n) lies inside config space.
func inRange(offset, n int) bool {
	return offset >= 0 && n > 0 && offset < ConfigSize && n <= ConfigSize-offset
}

// Read copies the registers at offset into data; bytes outside config
// space read as all ones.
func (c *ConfigSpace) Read(offset int, data []byte) {
	if !inRange(offset, len(data)) {
		fill(data)
		return
	}
	c.mu.Lock()
	copy(data, c.regs[offset:])
	c.mu.Unlock()
}

// Write stores data at offset through the write masks; writes reaching
// outside config space are ignored.
func (c *ConfigSpace) Write(offset int, data []byte) {
	if !inRange(offset, len(data)) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, v := range data {
		m := c.wmask[offset+i]
		c.regs[offset+i] = c.regs[offset+i]&^m | v&m
	}
	end := offset + len(data)
	for _, h := range c.hooks {
		if offset < h.off+h.n && h.off < end {
			h.fn(c.regs[h.off : h.off+h.n : h.off+h.n])
		}
	}
}

// barSize returns the size of memory BAR index and whether it is 64-bit;
// size 0 means no BAR starts at that register.
func (c *ConfigSpace) barSize(index int) (size uint64, is64 bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bars[index]
	if b.kind != barMem32 && b.kind != barMem64Low {
		return 0, false
	}
	return b.size, b.kind == barMem64Low
}

// setBARAddress programs BAR index with addr, as firmware does.
func (c *ConfigSpace) setBARAddress(index int, addr uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lo := RegBAR0 + 4*index
	flags := c.regs[lo] & barFlagBits
	binary.LittleEndian.PutUint32(c.regs[lo:], uint32(addr)&^barFlagBits|uint32(flags))
	if c.bars[index].kind == barMem64Low {
		binary.LittleEndian.PutUint32(c.regs[lo+4:], uint32(addr>>32))
	}
}

// barWindow is one BAR as currently decoded.
type barWindow struct {
	bar        int
	addr, size uint64
}

// decode appends the memory ranges the function answers to right now:
// none unless memory space is enabled in the command register.
func (c *ConfigSpace) decode(dst []barWindow) []barWindow {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.regs[RegCommand]&CommandMemory == 0 {
		return dst
	}
	for i, b := range c.bars {
		if b.kind != barMem32 && b.kind != barMem64Low {
			continue
		}
		lo := RegBAR0 + 4*i
		addr := uint64(binary.LittleEndian.Uint32(c.regs[lo:]) &^ barFlagBits)
		if b.kind == barMem64Low {
			addr |= uint64(binary.LittleEndian.Uint32(c.regs[lo+4:])) << 32
		}
		dst = append(dst, barWindow{bar: i, addr: addr, size: b.size})
	}
	return dst
}

// fill sets data to all ones: what a read nobody answers returns.
func fill(data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

// alignUp rounds v up to a multiple of align (a power of 2) and reports
// whether that overflowed.
func alignUp(v, align uint64) (uint64, bool) {
	sum, carry := bits.Add64(v, align-1, 0)
	return sum &^ (align - 1), carry != 0
}
