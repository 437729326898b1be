// Package net is virtio-net (virtio 1.2 §5.1) on one TAP queue opened with
// IFF_VNET_HDR: one receive and one transmit queue, each served by a
// goroutine of its own. The TAP's per-frame header is made the same 12
// bytes as virtio 1.x's struct virtio_net_hdr, so checksum and
// segmentation offloads pass through both ways untouched: the guest's TSO
// frames go to the host stack whole, and the host's go to the guest whole,
// spread over merged receive buffers.
package net

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/joeyrt/joey/internal/tap"
	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
)

// Feature bits (virtio 1.2 §5.1.3).
const (
	FeatureCsum      uint64 = 1 << 0
	FeatureGuestCsum uint64 = 1 << 1
	FeatureMTU       uint64 = 1 << 3
	FeatureMAC       uint64 = 1 << 5
	FeatureGuestTSO4 uint64 = 1 << 7
	FeatureGuestTSO6 uint64 = 1 << 8
	FeatureGuestECN  uint64 = 1 << 9
	FeatureHostTSO4  uint64 = 1 << 11
	FeatureHostTSO6  uint64 = 1 << 12
	FeatureHostECN   uint64 = 1 << 13
	FeatureMrgRxbuf  uint64 = 1 << 15
	FeatureStatus    uint64 = 1 << 16
)

// offered is every feature the device offers. Each depends only on
// features also offered (§5.1.3.1). UDP offloads are left out: the TAP
// would accept them one way only on older kernels.
const offered = FeatureCsum | FeatureGuestCsum | FeatureMTU | FeatureMAC |
	FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN |
	FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN |
	FeatureMrgRxbuf | FeatureStatus

const (
	// QueueSize is the number of descriptors of each queue.
	QueueSize = 256
	// HeaderLen is struct virtio_net_hdr with num_buffers, which virtio
	// 1.x always uses.
	HeaderLen = 12
	// DefaultMTU is the MTU the device reports when Options.MTU is 0.
	DefaultMTU = 1500

	rxQueue = 0
	txQueue = 1

	// frameMax bounds one frame with its header either way: a 64 KiB GSO
	// packet plus Ethernet and VLAN headers fits.
	frameMax = 1 << 17
	// ethHeaderLen is the shortest frame worth passing on.
	ethHeaderLen = 14

	statusLinkUp = 1
	configSize   = 12
	minMTU       = 68
	maxMTU       = 65535
)

// Options describe the NIC as the guest sees it.
type Options struct {
	// MAC is the guest's unicast Ethernet address (required).
	MAC net.HardwareAddr
	// MTU the guest is told to use; 0 means DefaultMTU. It should match
	// the TAP's MTU on the host, which the caller sets.
	MTU int
}

// Device is one virtio-net NIC.
type Device struct {
	tap    *os.File
	config [configSize]byte

	// life runs the receive and transmit goroutines of each activation.
	life virtio.Lifecycle[*session]
}

// New makes a NIC on tapFile, a queue file of a TAP opened with
// IFF_VNET_HDR in non-blocking mode (as internal/tap opens them), so reads
// can be interrupted on reset. New sets the TAP's header size to HeaderLen
// and turns its offloads off until a driver asks for them. Once New
// succeeds the device owns tapFile and Close closes it; on error the
// caller keeps it.
func New(tapFile *os.File, opts Options) (*Device, error) {
	mac, mtu := opts.MAC, opts.MTU
	switch {
	case len(mac) != 6:
		return nil, fmt.Errorf("virtio-net: MAC %q is %d bytes, want a 6-byte Ethernet address", mac, len(mac))
	case mac[0]&1 != 0:
		return nil, fmt.Errorf("virtio-net: MAC %s is a multicast address", mac)
	case string(mac) == "\x00\x00\x00\x00\x00\x00":
		return nil, fmt.Errorf("virtio-net: MAC %s is all zeros", mac)
	}
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < minMTU || mtu > maxMTU {
		return nil, fmt.Errorf("virtio-net: MTU %d out of range %d..%d (0 means %d)", mtu, minMTU, maxMTU, DefaultMTU)
	}
	info, err := tap.Inspect(tapFile)
	if err != nil {
		return nil, fmt.Errorf("virtio-net: %s is not a TAP queue: %w", tapFile.Name(), err)
	}
	if !info.TAP || !info.VnetHdr {
		return nil, fmt.Errorf("virtio-net: %s (%s) must be a TAP opened with IFF_VNET_HDR", tapFile.Name(), info.Name)
	}
	if err := tapFile.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("virtio-net: TAP %s: %w (open it with O_NONBLOCK so reads can be interrupted)", info.Name, err)
	}
	if err := tap.SetVnetHdrSize(tapFile, HeaderLen); err != nil {
		return nil, fmt.Errorf("virtio-net: TAP %s: %w", info.Name, err)
	}
	if err := tap.SetOffload(tapFile, 0); err != nil {
		return nil, fmt.Errorf("virtio-net: TAP %s: %w", info.Name, err)
	}
	d := &Device{tap: tapFile}
	copy(d.config[0:6], mac)
	putU16(d.config[6:], statusLinkUp)
	putU16(d.config[8:], 1) // max_virtqueue_pairs
	putU16(d.config[10:], uint16(mtu))
	return d, nil
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeNet }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return offered }

// QueueSizes implements virtio.Device: receive then transmit.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize, QueueSize} }

// ReadConfig implements virtio.Device: mac, status, max_virtqueue_pairs
// and mtu.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	virtio.ReadConfig(d.config[:], offset, data)
}

// WriteConfig implements virtio.Device. virtio 1.x drivers do not write
// the config space (the MAC changes only through the control queue, which
// this device has not), so writes are ignored.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device: it lets the TAP hand over the
// offloaded frames the driver accepts, and starts both queues.
func (d *Device) Activate(mem *memory.Memory, features uint64, queues []*virtio.Queue, irq virtio.Interrupter) error {
	err := d.life.Activate(func(stop <-chan struct{}, spawn func(func())) (*session, error) {
		switch {
		case features&virtio.FeatureVersion1 == 0:
			return nil, errors.New("driver did not accept VERSION_1, whose 12-byte header the TAP is set up for")
		case len(queues) < 2 || queues[rxQueue] == nil || queues[txQueue] == nil:
			return nil, errors.New("the receive and transmit queues must both be enabled")
		}
		if err := tap.SetOffload(d.tap, offloads(features)); err != nil {
			return nil, err
		}
		// Reset left a deadline in the past to stop the goroutines.
		if err := d.tap.SetDeadline(time.Time{}); err != nil {
			return nil, fmt.Errorf("clear TAP deadline: %w", err)
		}
		s := newSession(d.tap, features, queues[rxQueue], queues[txQueue], irq, stop)
		spawn(s.receive)
		spawn(s.transmit)
		// Frames may have been queued before DRIVER_OK without a kick.
		virtio.WakeUp(s.txKick)
		return s, nil
	})
	if err != nil {
		return fmt.Errorf("virtio-net: activate: %w", err)
	}
	return nil
}

// Notify implements virtio.Device: a kick of the receive queue means new
// buffers, of the transmit queue new frames. It never blocks.
func (d *Device) Notify(q int) {
	s, ok := d.life.Active()
	if !ok {
		return
	}
	switch q {
	case rxQueue:
		virtio.WakeUp(s.rxKick)
	case txQueue:
		virtio.WakeUp(s.txKick)
	}
}

// Reset implements virtio.Device. It interrupts the TAP reads and writes
// in progress and waits for both goroutines, so nothing touches guest
// memory once it returns. A frame read but not yet delivered is dropped.
func (d *Device) Reset() { d.life.Reset(d.halt) }

// halt ends an activation once its goroutines are told to stop. The
// deadline in the past wakes whichever is blocked on the TAP, and keeps any
// later read or write from blocking until Activate clears it.
func (d *Device) halt() {
	_ = d.tap.SetDeadline(time.Now()) // New checked the file takes deadlines
	// Whoever drives the device next may accept fewer offloads; frames
	// queued meanwhile must not need them. Best effort: a TAP that went
	// away has no frames to worry about.
	_ = tap.SetOffload(d.tap, 0)
}

// Err reports why the device stopped serving a queue since the last
// Activate (a ring the driver broke, a TAP that went away), or nil. Only a
// reset revives it.
func (d *Device) Err() error {
	s, ok := d.life.Active()
	if !ok {
		return nil
	}
	return s.failure()
}

// Close stops the device and closes the TAP file.
func (d *Device) Close() error {
	return d.life.Close(d.halt, func() error {
		if err := d.tap.Close(); err != nil {
			return fmt.Errorf("virtio-net: close TAP: %w", err)
		}
		return nil
	})
}
