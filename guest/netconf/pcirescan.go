package netconf

import (
	"errors"
	"fmt"
	"os"
)

// PCIRescan is the sysfs file that makes the kernel rescan every PCI bus.
const PCIRescan = "/sys/bus/pci/rescan"

// RescanPCI writes "1" to path (PCIRescan in the agent), so the kernel probes
// PCI devices added since boot. It is the rescan hook for a VMM whose PCI bus
// has no hotplug controller to announce a hot-added NIC. A missing path (a VM
// without PCI) is not an error: there is nothing to rescan. The file is never
// created.
func RescanPCI(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rescan PCI: %w", err)
	}
	_, err = f.WriteString("1")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("rescan PCI: write %s: %w", path, err)
	}
	return nil
}
