package cmdline

import (
	"fmt"
	"strconv"
)

// DeviceVhostVsock is an AF_VSOCK device served by the host kernel
// (/dev/vhost-vsock, which QEMU opens itself).
type DeviceVhostVsock struct {
	ID        string
	GuestCID  uint32
	Transport Transport
	Bus       string
}

// Args implements Option.
func (d DeviceVhostVsock) Args(*FDs) ([]string, error) {
	drv, err := d.Transport.driver("vhost-vsock")
	if err != nil {
		return nil, err
	}
	if err := checkID(drv, d.ID); err != nil {
		return nil, err
	}
	if d.GuestCID < 3 {
		return nil, fmt.Errorf("%s %s: guest cid must be ≥ 3 (got %d)", drv, d.ID, d.GuestCID)
	}
	p := props{"id=" + d.ID, "guest-cid=" + strconv.FormatUint(uint64(d.GuestCID), 10)}
	p.add("bus", d.Bus)
	return []string{"-device", p.join(drv)}, nil
}

// DeviceVirtioRNG gives the guest entropy from QEMU's built-in backend
// (the host's getrandom).
type DeviceVirtioRNG struct {
	ID        string
	Transport Transport
	Bus       string
}

// Args implements Option.
func (d DeviceVirtioRNG) Args(*FDs) ([]string, error) {
	return plainDevice("virtio-rng", d.ID, d.Transport, d.Bus)
}

// PCIeRootPort is an empty PCIe slot on q35 that a device can be hot-added
// to (device_add with bus=ID).
type PCIeRootPort struct {
	ID string
	// Chassis must differ between root ports.
	Chassis int
	Bus     string // empty: pcie.0
}

// Args implements Option.
func (r PCIeRootPort) Args(*FDs) ([]string, error) {
	if err := checkID("pcie-root-port", r.ID); err != nil {
		return nil, err
	}
	if r.Chassis < 1 || r.Chassis > 255 {
		return nil, fmt.Errorf("pcie-root-port %s: chassis must be 1-255 (got %d)", r.ID, r.Chassis)
	}
	bus := r.Bus
	if bus == "" {
		bus = "pcie.0"
	}
	p := props{"id=" + r.ID, "bus=" + bus, "chassis=" + strconv.Itoa(r.Chassis)}
	return []string{"-device", p.join("pcie-root-port")}, nil
}
