// Package pci is PCI bus 0 of the built-in VMM, as a stock kernel without
// ACPI finds it: configuration mechanism 1 on ports 0xCF8–0xCFF, a host
// bridge at 00:00.0, devices on function 0 of the other slots with their
// memory BARs assigned from one MMIO window (so the kernel claims them as
// firmware-assigned), and MSI-X as their only interrupt (no INTx is
// wired). ConfigSpace and MSIX are the building blocks of a device;
// everything the guest writes into them is checked, and accesses nobody
// answers read as all ones.
package pci

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// Port numbers of configuration mechanism 1. The bus decodes the eight
// ports from ConfigAddressPort; port offsets passed to ReadPort and
// WritePort are relative to it.
const (
	ConfigAddressPort = 0xcf8
	ConfigDataPort    = 0xcfc
	Ports             = 8
)

// CONFIG_ADDRESS fields.
const (
	addrEnable   = 1 << 31
	addrExtReg   = 0x0f00_0000 // AMD's extended register bits: beyond our 256 bytes
	addrBus      = 0x00ff_0000
	addrFunction = 0x0000_0700
	addrRegister = 0x0000_00fc
	// addrWritable are the bits a guest can set; the reserved ones read 0
	// as on Intel chipsets.
	addrWritable = addrEnable | addrExtReg | addrBus | 0xf800 | addrFunction | addrRegister
)

// Slots is the number of device numbers on the bus; slot 0 is the host
// bridge.
const Slots = 32

// Host bridge identity: Red Hat's generic PCIe host bridge IDs, which no
// Linux chipset quirk keys on.
const (
	hostBridgeVendor = 0x1b36
	hostBridgeDevice = 0x0008
	classHostBridge  = 0x060000
)

// Device is one PCI function on the bus. Config is its configuration
// space; ReadBAR and WriteBAR serve guest accesses of 1, 2, 4 or 8 bytes at
// offset inside memory BAR bar. They return nothing: a bad access from the
// guest reads all ones or is ignored, and a device that cannot go on fails
// itself rather than the VM.
type Device interface {
	Config() *ConfigSpace
	ReadBAR(bar int, offset uint64, data []byte)
	WriteBAR(bar int, offset uint64, data []byte)
}

// Bus is PCI bus 0: the configuration mechanism, the slots, and the MMIO
// window the devices' BARs live in.
type Bus struct {
	base, size uint64
	window     Window
	// mu guards everything below.
	mu sync.RWMutex
	// address is CONFIG_ADDRESS. One register serves every vCPU, as on
	// hardware; the guest serializes its use (Linux's pci_config_lock).
	address uint32
	slots   [Slots]Device
	// free is the lowest window address not given to a BAR yet.
	free uint64
	// decoded are the BARs the devices answer to right now, rebuilt after
	// every config write that can move or disable one.
	decoded []decodedBAR
}

type decodedBAR struct {
	barWindow
	dev Device
}

// NewBus returns bus 0 with its host bridge, assigning BARs from the MMIO
// window [base, base+size).
func NewBus(base, size uint64) (*Bus, error) {
	if size == 0 || base+size < base {
		return nil, fmt.Errorf("new PCI bus: bad MMIO window [%#x, +%#x)", base, size)
	}
	b := &Bus{base: base, size: size, free: base}
	b.window = Window{b: b, base: base, size: size}
	b.slots[0] = &hostBridge{cfg: NewConfigSpace(Header{
		VendorID: hostBridgeVendor,
		DeviceID: hostBridgeDevice,
		Class:    classHostBridge,
	})}
	return b, nil
}

// Add puts d on function 0 of the next free slot and assigns its BARs,
// each naturally aligned, from the MMIO window. The BAR registers then hold
// those addresses; memory decoding stays off until the guest enables it.
func (b *Bus) Add(d Device) (slot int, err error) {
	if d == nil || d.Config() == nil {
		return 0, fmt.Errorf("add PCI device: no device or config space")
	}
	cfg := d.Config()
	b.mu.Lock()
	defer b.mu.Unlock()
	slot = -1
	for i, s := range b.slots {
		if s == nil && slot < 0 {
			slot = i
		}
		if s != nil && s.Config() == cfg {
			return 0, fmt.Errorf("add PCI device: already in slot %d", i)
		}
	}
	if slot < 0 {
		return 0, fmt.Errorf("add PCI device: all %d slots are taken", Slots)
	}
	// Work out every address before changing anything, so a device that
	// does not fit leaves the bus as it was.
	end := b.base + b.size
	next := b.free
	var addrs [NumBARs]uint64
	for i := range NumBARs {
		size, is64 := cfg.barSize(i)
		if size == 0 {
			continue
		}
		addr, over := alignUp(next, size)
		if over || addr >= end || size > end-addr {
			return 0, fmt.Errorf("add PCI device: BAR %d of %#x bytes does not fit in the MMIO window [%#x, %#x)", i, size, b.base, end)
		}
		if !is64 && addr+size > 1<<32 {
			return 0, fmt.Errorf("add PCI device: 32-bit BAR %d would end above 4 GiB at %#x", i, addr+size)
		}
		addrs[i] = addr
		next = addr + size
	}
	for i, addr := range addrs {
		if size, _ := cfg.barSize(i); size != 0 {
			cfg.setBARAddress(i, addr)
		}
	}
	b.free = next
	b.slots[slot] = d
	b.rebuildLocked()
	return slot, nil
}

// MMIO is the bus's MMIO window, for the machine to map at the window
// base.
func (b *Bus) MMIO() *Window { return &b.window }

// Decode is a window on [base, base+size) outside the assignment window,
// for the machine to map there: the guest may move BARs anywhere, and
// Linux does move those of a device it finds by a rescan (it claims only
// the BARs it found at boot), putting 64-bit ones above 4 GiB.
func (b *Bus) Decode(base, size uint64) (*Window, error) {
	if size == 0 || base+size < base {
		return nil, fmt.Errorf("PCI decode window: bad range [%#x, +%#x)", base, size)
	}
	if base < b.base+b.size && b.base < base+size {
		return nil, fmt.Errorf("PCI decode window [%#x, +%#x) overlaps the assignment window [%#x, +%#x)", base, size, b.base, b.size)
	}
	return &Window{b: b, base: base, size: size}, nil
}

// ReadPort serves a read of the CONFIG_ADDRESS/CONFIG_DATA ports. Only a
// dword access at 0xCF8 reaches CONFIG_ADDRESS, as on real chipsets;
// anything the mechanism does not decode reads all ones.
func (b *Bus) ReadPort(offset uint16, data []byte) error {
	switch {
	case offset == 0 && len(data) == 4:
		b.mu.RLock()
		binary.LittleEndian.PutUint32(data, b.address)
		b.mu.RUnlock()
	case isDataAccess(offset, len(data)):
		dev, reg, ok := b.target(offset)
		if !ok {
			fill(data)
			return nil
		}
		dev.Config().Read(reg, data)
	default:
		fill(data)
	}
	return nil
}

// WritePort serves a write of the CONFIG_ADDRESS/CONFIG_DATA ports;
// writes the mechanism does not decode are ignored.
func (b *Bus) WritePort(offset uint16, data []byte) error {
	switch {
	case offset == 0 && len(data) == 4:
		b.mu.Lock()
		b.address = binary.LittleEndian.Uint32(data) & addrWritable
		b.mu.Unlock()
	case isDataAccess(offset, len(data)):
		dev, reg, ok := b.target(offset)
		if !ok {
			return nil
		}
		dev.Config().Write(reg, data)
		// The command register and the BARs decide where the device
		// answers.
		if reg < RegBAR0+4*NumBARs && reg+len(data) > RegCommand {
			b.rebuild()
		}
	}
	return nil
}

// isDataAccess reports whether a port access of n bytes at offset lies
// inside CONFIG_DATA.
func isDataAccess(offset uint16, n int) bool {
	k := int(offset) - (ConfigDataPort - ConfigAddressPort)
	return k >= 0 && (n == 1 || n == 2 || n == 4) && k+n <= 4
}

// target decodes CONFIG_ADDRESS for a data access at port offset: the
// device and register, or ok=false when nothing is there (mechanism
// disabled, another bus, a function other than 0, an extended register or
// an empty slot).
func (b *Bus) target(offset uint16) (Device, int, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	a := b.address
	if a&addrEnable == 0 || a&(addrExtReg|addrBus|addrFunction) != 0 {
		return nil, 0, false
	}
	dev := b.slots[a>>11&(Slots-1)]
	if dev == nil {
		return nil, 0, false
	}
	return dev, int(a&addrRegister) + int(offset) - (ConfigDataPort - ConfigAddressPort), true
}

// rebuild recomputes which BARs answer where.
func (b *Bus) rebuild() {
	b.mu.Lock()
	b.rebuildLocked()
	b.mu.Unlock()
}

func (b *Bus) rebuildLocked() {
	var wins []barWindow
	b.decoded = b.decoded[:0]
	for _, d := range b.slots {
		if d == nil {
			continue
		}
		wins = d.Config().decode(wins[:0])
		for _, w := range wins {
			b.decoded = append(b.decoded, decodedBAR{w, d})
		}
		if dw, ok := d.(DecodeWatcher); ok {
			var at [NumBARs]uint64
			for _, w := range wins {
				at[w.bar] = w.addr
			}
			dw.BARsDecoded(at)
		}
	}
}

// DecodeWatcher is a Device that follows where its BARs answer, for what
// it registers outside the bus (KVM ioeventfds at its notify addresses).
// After every config write that can move or disable a BAR the bus calls
// BARsDecoded with the address of each BAR that decodes now, 0 for one
// that does not, with the bus locked: it must not call back into the bus.
type DecodeWatcher interface {
	BARsDecoded(at [NumBARs]uint64)
}

// find returns the device BAR covering all of [addr, addr+n). Overlapping
// BARs are the guest's mistake; the first device in slot order wins.
func (b *Bus) find(addr, n uint64) (Device, int, uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, d := range b.decoded {
		if addr >= d.addr && addr-d.addr < d.size && n <= d.size-(addr-d.addr) {
			return d.dev, d.bar, addr - d.addr, true
		}
	}
	return nil, 0, 0, false
}

// Window is a range of guest-physical addresses where a bus decodes its
// devices' BARs: it routes each access to the BAR that decodes it now.
type Window struct {
	b          *Bus
	base, size uint64
}

// Base is the window's first guest-physical address.
func (w *Window) Base() uint64 { return w.base }

// Size is the window's size in bytes.
func (w *Window) Size() uint64 { return w.size }

// ReadMMIO reads at offset from the window base; nothing there reads all
// ones.
func (w *Window) ReadMMIO(offset uint64, data []byte) error {
	dev, bar, off, ok := w.lookup(offset, len(data))
	if !ok {
		fill(data)
		return nil
	}
	dev.ReadBAR(bar, off, data)
	return nil
}

// WriteMMIO writes at offset from the window base; nothing there ignores
// it.
func (w *Window) WriteMMIO(offset uint64, data []byte) error {
	if dev, bar, off, ok := w.lookup(offset, len(data)); ok {
		dev.WriteBAR(bar, off, data)
	}
	return nil
}

func (w *Window) lookup(offset uint64, n int) (Device, int, uint64, bool) {
	if n == 0 || offset >= w.size || uint64(n) > w.size-offset {
		return nil, 0, 0, false
	}
	return w.b.find(w.base+offset, uint64(n))
}

// hostBridge is 00:00.0. Linux's pci_sanity_check looks for a host bridge
// class on bus 0 before it trusts mechanism 1.
type hostBridge struct{ cfg *ConfigSpace }

func (h *hostBridge) Config() *ConfigSpace { return h.cfg }

// ReadBAR is never reached: the host bridge has no BARs.
func (h *hostBridge) ReadBAR(_ int, _ uint64, data []byte) { fill(data) }

// WriteBAR is never reached: the host bridge has no BARs.
func (h *hostBridge) WriteBAR(int, uint64, []byte) {}
