package machine

import (
	"fmt"
	"sort"
	"sync"
)

// PortDevice is a device on the x86 I/O port space. Offset is relative to
// the base the device was added at; data holds the 1, 2 or 4 bytes of one
// access (filled by ReadPort).
type PortDevice interface {
	ReadPort(offset uint16, data []byte) error
	WritePort(offset uint16, data []byte) error
}

// MMIODevice is a device in guest physical address space outside RAM.
type MMIODevice interface {
	ReadMMIO(offset uint64, data []byte) error
	WriteMMIO(offset uint64, data []byte) error
}

// Access describes one guest access nobody claimed, for the Unhandled hook.
type Access struct {
	// MMIO is true for a memory access, false for port I/O.
	MMIO bool
	// Addr is the port number or guest physical address.
	Addr uint64
	// Write is the direction; Data holds the written bytes or the bytes a
	// read will return (all ones unless the hook changes them).
	Write bool
	Data  []byte
	// VCPU is the index of the vCPU that made the access.
	VCPU int
}

func (a Access) String() string {
	space, dir := "port", "read"
	if a.MMIO {
		space = "mmio"
	}
	if a.Write {
		dir = "write"
	}
	return fmt.Sprintf("vCPU %d %s %d-byte %s %#x % x", a.VCPU, dir, len(a.Data), space, a.Addr, a.Data)
}

type busRange[D any] struct {
	base, size uint64
	dev        D
}

// bus maps address ranges to devices; ranges never overlap.
type bus[D any] struct {
	// mu guards ranges: devices are added before Start and looked up by
	// every vCPU.
	mu sync.RWMutex
	// ranges is sorted by base.
	ranges []busRange[D]
}

func (b *bus[D]) add(base, size uint64, d D) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("bad range [%#x, +%#x)", base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.ranges {
		if base < r.base+r.size && r.base < base+size {
			return fmt.Errorf("range [%#x, +%#x) overlaps a device at [%#x, +%#x)", base, size, r.base, r.size)
		}
	}
	b.ranges = append(b.ranges, busRange[D]{base, size, d})
	sort.Slice(b.ranges, func(i, j int) bool { return b.ranges[i].base < b.ranges[j].base })
	return nil
}

// find returns the device covering the whole access [addr, addr+n).
func (b *bus[D]) find(addr, n uint64) (D, uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base+b.ranges[i].size > addr })
	if i < len(b.ranges) {
		r := b.ranges[i]
		if addr >= r.base && addr+n <= r.base+r.size {
			return r.dev, addr - r.base, true
		}
	}
	var zero D
	return zero, 0, false
}
