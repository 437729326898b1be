package qemu

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/joeyrt/joey/hypervisor"
)

// Capabilities implements hypervisor.Driver. It asks QEMU which device models
// it was built with (once; the answer is cached) and looks at the host for
// KVM and vhost-vsock.
func (d *Driver) Capabilities(ctx context.Context) (hypervisor.Capabilities, error) {
	devices, err := d.probeDevices(ctx)
	if err != nil {
		return hypervisor.Capabilities{}, fmt.Errorf("qemu capabilities: %w", err)
	}
	accel, err := resolveAccel(hypervisor.AccelAuto, d.detect())
	if err != nil {
		return hypervisor.Capabilities{}, fmt.Errorf("qemu capabilities: %w", err)
	}
	c := hypervisor.Capabilities{
		Accel:       hypervisor.Accel(accel.kind),
		AccelReason: accel.reason,
		Pause:       hypervisor.Support{Available: true, Reason: "QMP stop/cont"},
		Resize:      hypervisor.Support{Reason: "not implemented by the qemu driver"},
		Snapshot:    hypervisor.Support{Reason: "not implemented by the qemu driver"},
	}
	if devices["pcie-root-port"] && devices["virtio-blk-pci"] && devices["virtio-net-pci"] {
		c.Hotplug = hypervisor.Support{Available: true,
			Reason: "virtio-blk and virtio-net on q35, for VMs started with HotplugSlots > 0 (microvm has no hotplug)"}
	} else {
		c.Hotplug = hypervisor.Support{Reason: "this QEMU lacks pcie-root-port, virtio-blk-pci or virtio-net-pci"}
	}
	if devices["virtio-9p-device"] && devices["virtio-9p-pci"] {
		c.SharedFS = append(c.SharedFS, hypervisor.SharedFS9P)
	}
	if devices["vhost-user-fs-device"] && devices["vhost-user-fs-pci"] {
		c.SharedFS = append(c.SharedFS, hypervisor.SharedFSVirtioFS)
	}
	c.AgentChannels = []hypervisor.ChannelKind{hypervisor.ChannelSerial}
	if _, err := os.Stat(d.vsockDevice); err == nil && devices["vhost-vsock-device"] {
		c.AgentChannels = append(c.AgentChannels, hypervisor.ChannelVsock)
	}
	return c, nil
}

// probeDevices lists QEMU's device models (`-device help`).
func (d *Driver) probeDevices(ctx context.Context) (map[string]bool, error) {
	d.probeMu.Lock()
	defer d.probeMu.Unlock()
	if d.devices != nil {
		return d.devices, nil
	}
	bin, err := d.binary()
	if err != nil {
		return nil, err
	}
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-nodefaults", "-machine", "none", "-device", "help")
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s -device help: %w: %s", bin, err, strings.TrimSpace(stderr.String()))
	}
	devices := map[string]bool{}
	// Lines look like: name "virtio-net-pci", bus PCI, alias "virtio-net"
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), `name "`)
		if !ok {
			continue
		}
		if name, _, ok := strings.Cut(rest, `"`); ok {
			devices[name] = true
		}
	}
	if len(devices) == 0 {
		return nil, fmt.Errorf("%s -device help listed no devices", bin)
	}
	d.devices = devices
	return devices, nil
}
