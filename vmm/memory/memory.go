// Package memory is the guest's RAM as the host sees it: one anonymous
// mapping installed as a KVM memory slot at guest physical address 0. Every
// access from the host goes through a bounds-checked accessor, because
// addresses and lengths come from the guest (descriptors, boot tables) and
// the host never trusts them.
package memory

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Limit is the most RAM this layout maps: it ends below 3 GiB, where the
// MMIO hole for the IOAPIC, local APIC and PCI devices starts.
const Limit = 3 << 30

// ErrOutOfRange is wrapped by every access that leaves guest RAM.
var ErrOutOfRange = errors.New("guest address out of range")

// Memory is guest RAM starting at guest physical address 0.
type Memory struct {
	// mem is the host mapping; nil once Close has run.
	mem []byte
}

// New maps size bytes of zeroed anonymous memory (size a multiple of 4 KiB,
// at most Limit). Pages are only backed once touched.
func New(size uint64) (*Memory, error) {
	if size == 0 || size%4096 != 0 || size > Limit {
		return nil, fmt.Errorf("guest memory of %#x bytes: want a non-zero multiple of 4 KiB up to %#x", size, uint64(Limit))
	}
	mem, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("map %#x bytes of guest memory: %w", size, err)
	}
	return &Memory{mem: mem}, nil
}

// Size is the number of bytes of guest RAM.
func (m *Memory) Size() uint64 { return uint64(len(m.mem)) }

// Host returns the whole mapping, for registering it with KVM only.
func (m *Memory) Host() []byte { return m.mem }

// Slice returns guest RAM [addr, addr+n) without copying. It fails, rather
// than clamps, when any byte of the range is outside RAM or addr+n overflows.
func (m *Memory) Slice(addr, n uint64) ([]byte, error) {
	size := uint64(len(m.mem))
	if addr > size || n > size-addr {
		return nil, fmt.Errorf("%w: [%#x, +%#x) with %#x bytes of RAM", ErrOutOfRange, addr, n, size)
	}
	return m.mem[addr : addr+n : addr+n], nil
}

// ReadAt copies guest RAM at addr into p; all of p or an error.
func (m *Memory) ReadAt(p []byte, addr uint64) error {
	s, err := m.Slice(addr, uint64(len(p)))
	if err != nil {
		return fmt.Errorf("read guest memory: %w", err)
	}
	copy(p, s)
	return nil
}

// WriteAt copies p into guest RAM at addr; all of p or an error, and
// nothing is written when the range does not fit.
func (m *Memory) WriteAt(p []byte, addr uint64) error {
	s, err := m.Slice(addr, uint64(len(p)))
	if err != nil {
		return fmt.Errorf("write guest memory: %w", err)
	}
	copy(s, p)
	return nil
}

// Uint32 reads a little-endian 32-bit value at addr.
func (m *Memory) Uint32(addr uint64) (uint32, error) {
	s, err := m.Slice(addr, 4)
	if err != nil {
		return 0, fmt.Errorf("read guest memory: %w", err)
	}
	return binary.LittleEndian.Uint32(s), nil
}

// PutUint64 writes a little-endian 64-bit value at addr.
func (m *Memory) PutUint64(addr, v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return m.WriteAt(b[:], addr)
}

// Close unmaps guest RAM; every slice handed out is invalid afterwards.
func (m *Memory) Close() error {
	if m.mem == nil {
		return nil
	}
	err := unix.Munmap(m.mem)
	m.mem = nil
	if err != nil {
		return fmt.Errorf("unmap guest memory: %w", err)
	}
	return nil
}
