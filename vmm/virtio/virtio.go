// Package virtio is the device side of virtio 1.x, independent of the
// transport: the Device contract every device model implements, the split
// virtqueue with its descriptor-chain walk, and the feature and status bits
// the transports and devices share. Everything read from a ring comes from
// the guest and is checked before use: a bad ring fails the one device, not
// the VMM.
package virtio

import (
	"fmt"

	"github.com/joeyrt/joey/vmm/memory"
)

// DeviceType is the virtio device ID (virtio 1.2 §5).
type DeviceType uint16

// Device types the built-in VMM models.
const (
	TypeNet     DeviceType = 1
	TypeBlock   DeviceType = 2
	TypeConsole DeviceType = 3
	TypeRNG     DeviceType = 4
	Type9P      DeviceType = 9
	TypeVsock   DeviceType = 19
)

func (t DeviceType) String() string {
	switch t {
	case TypeNet:
		return "net"
	case TypeBlock:
		return "block"
	case TypeConsole:
		return "console"
	case TypeRNG:
		return "rng"
	case Type9P:
		return "9p"
	case TypeVsock:
		return "vsock"
	}
	return fmt.Sprintf("virtio type %d", uint16(t))
}

// Feature bits shared by every device type (virtio 1.2 §6).
const (
	FeatureIndirectDesc uint64 = 1 << 28
	FeatureEventIdx     uint64 = 1 << 29
	FeatureVersion1     uint64 = 1 << 32
	FeatureAccessPlat   uint64 = 1 << 33
)

// Device status bits (virtio 1.2 §2.1).
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128
)

// Interrupter raises the driver-visible interrupts of one device. The
// transport implements it (MSI-X vectors on PCI).
type Interrupter interface {
	// Queue signals that the used ring of queue q has new entries.
	Queue(q int) error
	// Config signals that the device configuration space changed.
	Config() error
}

// Device is one virtio device model. The transport calls it from vCPU
// threads; a device serializes its own state.
type Device interface {
	// Type is the virtio device ID.
	Type() DeviceType
	// Features are the device-specific feature bits offered; the transport
	// adds FeatureVersion1 and, when the device handles them, the ring
	// features.
	Features() uint64
	// QueueSizes gives each virtqueue's maximum size (a power of 2).
	QueueSizes() []uint16
	// ReadConfig and WriteConfig access the device configuration space.
	// Offsets and lengths come from the guest: out of range reads give
	// zeros, writes are ignored.
	ReadConfig(offset uint64, data []byte)
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device once the driver set DRIVER_OK, with the
	// negotiated features and the queues the driver enabled (nil for one it
	// left disabled). The device keeps irq to signal the driver.
	Activate(mem *memory.Memory, features uint64, queues []*Queue, irq Interrupter) error
	// Notify is the driver's kick of queue q.
	Notify(q int)
	// Reset returns the device to its initial state: it stops using the
	// queues and guest memory before it returns.
	Reset()
}

// ReadConfig copies the part of a device's configuration space cfg that a
// guest read of len(data) bytes at offset covers; bytes beyond cfg (or an
// offset that wraps) read as zero.
func ReadConfig(cfg []byte, offset uint64, data []byte) {
	clear(data)
	if offset < uint64(len(cfg)) {
		copy(data, cfg[offset:])
	}
}
