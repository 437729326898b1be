package virtiopci

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/joeyrt/joey/vmm/virtio"
)

// Offsets in struct virtio_pci_common_cfg (virtio 1.2 §4.1.4.3). Fields
// from 0x38 on (queue_notify_data, queue_reset and the admin queue) belong
// to features this transport does not offer and read as zero.
const (
	regDeviceFeatureSelect = 0x00
	regDeviceFeature       = 0x04
	regDriverFeatureSelect = 0x08
	regDriverFeature       = 0x0c
	regConfigMSIXVector    = 0x10
	regNumQueues           = 0x12
	regDeviceStatus        = 0x14
	regConfigGeneration    = 0x15
	regQueueSelect         = 0x16
	regQueueSize           = 0x18
	regQueueMSIXVector     = 0x1a
	regQueueEnable         = 0x1c
	regQueueNotifyOff      = 0x1e
	regQueueDesc           = 0x20
	regQueueDriver         = 0x28
	regQueueDevice         = 0x30
	regQueueEnd            = 0x38
)

// readCommon serves a read of the common configuration from a snapshot of
// the registers, so any width at any offset reads coherent bytes.
func (t *Transport) readCommon(off uint64, data []byte) {
	var b [commonSize]byte
	le := binary.LittleEndian
	t.mu.Lock()
	r := &t.r
	le.PutUint32(b[regDeviceFeatureSelect:], r.deviceFeatureSelect)
	le.PutUint32(b[regDeviceFeature:], half(t.offered, r.deviceFeatureSelect))
	le.PutUint32(b[regDriverFeatureSelect:], r.driverFeatureSelect)
	le.PutUint32(b[regDriverFeature:], half(r.driverFeatures, r.driverFeatureSelect))
	le.PutUint16(b[regConfigMSIXVector:], r.configVector)
	le.PutUint16(b[regNumQueues:], uint16(len(r.queues)))
	b[regDeviceStatus] = r.status
	b[regConfigGeneration] = t.generation
	le.PutUint16(b[regQueueSelect:], r.queueSelect)
	// A queue that does not exist reads as size 0: unavailable.
	if q := t.selectedLocked(); q != nil {
		le.PutUint16(b[regQueueSize:], q.size)
		le.PutUint16(b[regQueueMSIXVector:], q.vector)
		if q.enabled {
			b[regQueueEnable] = 1
		}
		le.PutUint16(b[regQueueNotifyOff:], r.queueSelect)
		le.PutUint64(b[regQueueDesc:], q.desc)
		le.PutUint64(b[regQueueDriver:], q.avail)
		le.PutUint64(b[regQueueDevice:], q.used)
	}
	t.mu.Unlock()
	copy(data, b[off:])
}

// half is the 32 bits of v that feature select sel shows.
func half(v uint64, sel uint32) uint32 {
	switch sel {
	case 0:
		return uint32(v)
	case 1:
		return uint32(v >> 32)
	}
	return 0
}

// selectedLocked is the queue queue_select names, or nil.
func (t *Transport) selectedLocked() *queueRegs {
	if int(t.r.queueSelect) >= len(t.r.queues) {
		return nil
	}
	return &t.r.queues[t.r.queueSelect]
}

// writeCommon serves a write of the common configuration. Each field
// takes only a write of its own width at its own offset (64-bit addresses
// also as two 32-bit halves); anything else, and writes to read-only
// fields, are ignored.
func (t *Transport) writeCommon(off uint64, data []byte) {
	n := len(data)
	if off == regDeviceStatus && n == 1 {
		t.writeStatus(data[0])
		return
	}
	var b [8]byte
	copy(b[:], data)
	v := binary.LittleEndian.Uint64(b[:])
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &t.r
	switch {
	case off == regDeviceFeatureSelect && n == 4:
		r.deviceFeatureSelect = uint32(v)
	case off == regDriverFeatureSelect && n == 4:
		r.driverFeatureSelect = uint32(v)
	case off == regDriverFeature && n == 4:
		// Features are fixed once FEATURES_OK was accepted.
		if r.status&virtio.StatusFeaturesOK != 0 {
			return
		}
		switch r.driverFeatureSelect {
		case 0:
			r.driverFeatures = r.driverFeatures&^0xffff_ffff | v
		case 1:
			r.driverFeatures = r.driverFeatures&0xffff_ffff | v<<32
		}
	case off == regConfigMSIXVector && n == 2:
		r.configVector = t.vector(uint16(v))
	case off == regQueueSelect && n == 2:
		r.queueSelect = uint16(v)
	case off >= regQueueSize && off < regQueueEnd:
		t.writeQueueLocked(off, n, v)
	}
}

// writeQueueLocked writes a field of the selected queue. Its ring layout
// is frozen once it is enabled or the device runs.
func (t *Transport) writeQueueLocked(off uint64, n int, v uint64) {
	q := t.selectedLocked()
	if q == nil {
		return
	}
	frozen := q.enabled || t.r.status&virtio.StatusDriverOK != 0
	switch {
	case off == regQueueMSIXVector && n == 2:
		q.vector = t.vector(uint16(v))
	case off == regQueueSize && n == 2 && !frozen:
		// Checked when the device activates: it must be a power of 2 no
		// larger than the maximum.
		q.size = uint16(v)
	case off == regQueueEnable && n == 2 && !frozen:
		// Writing 0 is forbidden to the driver and means nothing here.
		if v == 1 {
			q.enabled = true
		}
	case off >= regQueueDesc && off < regQueueEnd && !frozen:
		field := [...]*uint64{&q.desc, &q.avail, &q.used}[(off-regQueueDesc)/8]
		switch rel := (off - regQueueDesc) % 8; {
		case rel == 0 && n == 8:
			*field = v
		case rel == 0 && n == 4:
			*field = *field&^0xffff_ffff | v
		case rel == 4 && n == 4:
			*field = *field&0xffff_ffff | v<<32
		}
	}
}

// vector is what a write of v to an MSI-X vector field stores: a vector
// the table does not have reads back as NoVector, which tells the driver
// the assignment failed.
func (t *Transport) vector(v uint16) uint16 {
	if int(v) >= t.msix.Vectors() {
		return NoVector
	}
	return v
}

// writeStatus follows the driver through device initialization (virtio
// 1.2 §3.1): 0 resets, FEATURES_OK is kept only for an acceptable feature
// set, DRIVER_OK activates the device. Bits the driver set stay set until
// a reset.
func (t *Transport) writeStatus(v uint8) {
	t.life.Lock()
	defer t.life.Unlock()
	if v == 0 {
		t.reset()
		return
	}
	t.mu.Lock()
	old := t.r.status
	next := old | v&^virtio.StatusDeviceNeedsReset
	if next&virtio.StatusFeaturesOK != 0 && old&virtio.StatusFeaturesOK == 0 && !t.acceptableLocked(t.r.driverFeatures) {
		next &^= virtio.StatusFeaturesOK
	}
	t.r.status = next
	if next&virtio.StatusDriverOK == 0 || old&virtio.StatusDriverOK != 0 {
		t.mu.Unlock()
		return
	}
	features := t.r.driverFeatures
	queues, err := t.queuesLocked(features)
	epoch := t.epoch
	t.mu.Unlock()
	if err == nil {
		if err = t.dev.Activate(t.mem, features, queues, &interrupter{t: t, epoch: epoch}); err != nil {
			err = fmt.Errorf("activate: %w", err)
		}
	}
	if err != nil {
		t.needsReset(err)
		return
	}
	t.mu.Lock()
	t.active = true
	t.mu.Unlock()
}

// acceptableLocked reports whether the driver may run with features: it
// must speak virtio 1 and choose nothing the device did not offer.
func (t *Transport) acceptableLocked(features uint64) bool {
	return features&virtio.FeatureVersion1 != 0 && features&^t.offered == 0
}

// queuesLocked builds the device side of every enabled queue.
func (t *Transport) queuesLocked(features uint64) ([]*virtio.Queue, error) {
	if t.r.status&virtio.StatusFeaturesOK == 0 {
		return nil, errors.New("DRIVER_OK without accepted features")
	}
	queues := make([]*virtio.Queue, len(t.r.queues))
	for i, q := range t.r.queues {
		if !q.enabled {
			continue
		}
		if q.size > t.maxSizes[i] {
			return nil, fmt.Errorf("queue %d: size %d above the maximum %d", i, q.size, t.maxSizes[i])
		}
		vq, err := virtio.NewQueue(t.mem, virtio.QueueConfig{Size: q.size, Desc: q.desc, Avail: q.avail, Used: q.used}, features)
		if err != nil {
			return nil, fmt.Errorf("queue %d: %w", i, err)
		}
		queues[i] = vq
	}
	return queues, nil
}

// needsReset records that the device cannot go on and tells the driver:
// DEVICE_NEEDS_RESET and a config interrupt.
func (t *Transport) needsReset(err error) {
	err = fmt.Errorf("virtio-pci %v: %w", t.dev.Type(), err)
	t.mu.Lock()
	t.r.status |= virtio.StatusDeviceNeedsReset
	t.err = err
	t.mu.Unlock()
	if serr := t.signalConfig(); serr != nil {
		t.mu.Lock()
		t.err = errors.Join(err, serr)
		t.mu.Unlock()
	}
}

// reset stops the device and returns the transport to its initial state;
// the status reads 0 only once the device has stopped. Called with life
// held.
func (t *Transport) reset() {
	t.mu.Lock()
	t.active = false
	t.epoch++
	t.mu.Unlock()
	t.dev.Reset()
	t.mu.Lock()
	t.r = t.resetRegisters()
	t.err = nil
	t.mu.Unlock()
}
