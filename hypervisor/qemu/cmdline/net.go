package cmdline

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// Netdev is a tap -netdev on TAP queues the caller opened. It owns the files:
// Close closes them, and the command line's Close calls it.
type Netdev struct {
	ID string
	// TapFiles hold one file per queue.
	TapFiles []*os.File
	// VhostFiles are /dev/vhost-net files, one per queue, or none.
	VhostFiles []*os.File
}

// Args implements Option.
func (n Netdev) Args(fds *FDs) ([]string, error) {
	if err := checkID("netdev", n.ID); err != nil {
		return nil, err
	}
	if len(n.TapFiles) == 0 {
		return nil, fmt.Errorf("netdev %s: no tap file", n.ID)
	}
	if len(n.VhostFiles) != 0 && len(n.VhostFiles) != len(n.TapFiles) {
		return nil, fmt.Errorf("netdev %s: %d vhost files for %d tap files", n.ID, len(n.VhostFiles), len(n.TapFiles))
	}
	add := func(files []*os.File, what string) (string, error) {
		nums := make([]string, len(files))
		for i, f := range files {
			if f == nil {
				return "", fmt.Errorf("netdev %s: %s file %d is nil", n.ID, what, i)
			}
			nums[i] = strconv.Itoa(fds.Add(f))
		}
		return strings.Join(nums, ":"), nil
	}
	taps, err := add(n.TapFiles, "tap")
	if err != nil {
		return nil, err
	}
	vhosts, err := add(n.VhostFiles, "vhost")
	if err != nil {
		return nil, err
	}
	// One queue takes fd=, several take fds= (a colon-separated list).
	plural := ""
	if len(n.TapFiles) > 1 {
		plural = "s"
	}
	p := props{"id=" + n.ID, "fd" + plural + "=" + taps}
	if vhosts != "" {
		p = append(p, "vhost=on", "vhostfd"+plural+"="+vhosts)
	}
	return []string{"-netdev", p.join("tap")}, nil
}

// Close closes the tap and vhost files.
func (n Netdev) Close() error {
	var errs []error
	for _, f := range append(append([]*os.File(nil), n.TapFiles...), n.VhostFiles...) {
		if f == nil {
			continue
		}
		if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, fmt.Errorf("netdev %s: %w", n.ID, err))
		}
	}
	return errors.Join(errs...)
}

// DeviceVirtioNet is the guest's side of a Netdev.
type DeviceVirtioNet struct {
	ID     string
	Netdev string
	MAC    net.HardwareAddr // nil: QEMU picks one
	MTU    int              // 0: default
	// Queues is the netdev's queue count; more than one turns on
	// multi-queue.
	Queues    int
	Transport Transport
	Bus       string
}

// Args implements Option.
func (d DeviceVirtioNet) Args(*FDs) ([]string, error) {
	drv, err := d.Transport.driver("virtio-net")
	if err != nil {
		return nil, err
	}
	if err := checkID(drv, d.ID); err != nil {
		return nil, err
	}
	if err := checkRefs(drv+" "+d.ID, "netdev", d.Netdev); err != nil {
		return nil, err
	}
	p := props{"id=" + d.ID, "netdev=" + d.Netdev}
	if d.MAC != nil {
		if len(d.MAC) != 6 {
			return nil, fmt.Errorf("%s %s: mac %q is not 6 bytes", drv, d.ID, d.MAC)
		}
		p.add("mac", d.MAC.String())
	}
	if d.MTU != 0 {
		p.add("host_mtu", strconv.Itoa(d.MTU))
	}
	if d.Queues > 1 {
		p.add("mq", "on")
		if d.Transport == PCI {
			// One MSI-X vector per rx and tx queue, plus config and control.
			p.add("vectors", strconv.Itoa(2*d.Queues+2))
		}
	}
	p.add("bus", d.Bus)
	if d.Transport == PCI {
		// No iPXE option ROM: we never network-boot, and loading it costs time.
		p = append(p, "romfile=")
	}
	return []string{"-device", p.join(drv)}, nil
}
