package cmdline

import (
	"fmt"
	"strconv"
	"strings"
)

// MachineType is a QEMU x86 machine.
type MachineType string

const (
	Microvm MachineType = "microvm" // no PCI, no firmware work: boots fastest
	Q35     MachineType = "q35"     // PCIe: needed for hotplug
	PC      MachineType = "pc"      // i440fx
)

// Transport is the virtio transport the machine offers.
func (m MachineType) Transport() Transport {
	if m == Microvm {
		return MMIO
	}
	return PCI
}

// Machine is -machine.
type Machine struct {
	Type MachineType
	// MemoryBackend is the id of a memory backend object for guest RAM.
	MemoryBackend string
}

// Args implements Option.
func (m Machine) Args(*FDs) ([]string, error) {
	var p props
	switch m.Type {
	case Microvm:
		// No option ROMs to scan (we boot PVH or bzImage directly), the ISA
		// serial port for the console and the RTC for the guest's clock.
		p = props{"x-option-roms=off", "isa-serial=on", "rtc=on"}
	case Q35, PC:
	default:
		return nil, fmt.Errorf("machine: type %q is not one of microvm, q35, pc", m.Type)
	}
	if m.MemoryBackend != "" {
		if err := checkID("machine memory backend", m.MemoryBackend); err != nil {
			return nil, err
		}
		p.add("memory-backend", m.MemoryBackend)
	}
	return []string{"-machine", p.join(string(m.Type))}, nil
}

// Accelerator is -accel.
type Accelerator struct {
	Kind string // "kvm" or "tcg"
}

// Args implements Option.
func (a Accelerator) Args(*FDs) ([]string, error) {
	if a.Kind != "kvm" && a.Kind != "tcg" {
		return nil, fmt.Errorf("accel: kind %q is not kvm or tcg", a.Kind)
	}
	return []string{"-accel", a.Kind}, nil
}

// CPU is -cpu: a model and the features turned off.
type CPU struct {
	Model string   // "host", "max"
	Off   []string // features to disable, e.g. "la57"
}

// Args implements Option.
func (c CPU) Args(*FDs) ([]string, error) {
	if c.Model == "" || strings.ContainsAny(c.Model, ",=") {
		return nil, fmt.Errorf("cpu: model %q must be one plain name", c.Model)
	}
	var p props
	for _, f := range c.Off {
		if f == "" || strings.ContainsAny(f, ",=") {
			return nil, fmt.Errorf("cpu: feature %q must be one plain name", f)
		}
		p.add(f, "off")
	}
	return []string{"-cpu", p.join(c.Model)}, nil
}

// SMP is -smp.
type SMP struct {
	CPUs    int
	MaxCPUs int // 0: no room to add CPUs
}

// Args implements Option.
func (s SMP) Args(*FDs) ([]string, error) {
	if s.CPUs < 1 {
		return nil, fmt.Errorf("smp: cpus must be ≥ 1 (got %d)", s.CPUs)
	}
	if s.MaxCPUs != 0 && s.MaxCPUs < s.CPUs {
		return nil, fmt.Errorf("smp: maxcpus %d is below cpus %d", s.MaxCPUs, s.CPUs)
	}
	var p props
	if s.MaxCPUs > s.CPUs {
		p.add("maxcpus", strconv.Itoa(s.MaxCPUs))
	}
	return []string{"-smp", p.join(strconv.Itoa(s.CPUs))}, nil
}

// Memory is -m.
type Memory struct {
	SizeMiB int
	// Slots and MaxMiB leave room for memory hotplug (pc/q35).
	Slots  int
	MaxMiB int
}

// Args implements Option.
func (m Memory) Args(*FDs) ([]string, error) {
	if m.SizeMiB < 1 {
		return nil, fmt.Errorf("memory: size must be ≥ 1 MiB (got %d)", m.SizeMiB)
	}
	var p props
	if m.Slots != 0 || m.MaxMiB != 0 {
		if m.Slots < 1 || m.MaxMiB <= m.SizeMiB {
			return nil, fmt.Errorf("memory: hotplug needs slots ≥ 1 and maxmem above %d MiB (got slots %d, maxmem %d MiB)", m.SizeMiB, m.Slots, m.MaxMiB)
		}
		p.add("slots", strconv.Itoa(m.Slots))
		p.add("maxmem", strconv.Itoa(m.MaxMiB)+"M")
	}
	return []string{"-m", p.join(strconv.Itoa(m.SizeMiB) + "M")}, nil
}

// MemoryBackendFile is -object memory-backend-file: guest RAM in a file
// mapping that other processes (vhost-user daemons) can map too.
type MemoryBackendFile struct {
	ID      string
	SizeMiB int
	// Path is a directory (QEMU makes an unlinked file in it) or a file.
	Path  string
	Share bool
}

// Args implements Option.
func (m MemoryBackendFile) Args(*FDs) ([]string, error) {
	if err := checkID("memory-backend-file", m.ID); err != nil {
		return nil, err
	}
	if m.SizeMiB < 1 {
		return nil, fmt.Errorf("memory-backend-file %s: size must be ≥ 1 MiB (got %d)", m.ID, m.SizeMiB)
	}
	if err := checkPath("memory-backend-file "+m.ID, "path", m.Path); err != nil {
		return nil, err
	}
	p := props{"id=" + m.ID, "size=" + strconv.Itoa(m.SizeMiB) + "M", "mem-path=" + escape(m.Path), "share=" + onOff(m.Share)}
	return []string{"-object", p.join("memory-backend-file")}, nil
}

// Kernel is -kernel, -initrd and -append. QEMU boots an ELF kernel with a
// PVH note through PVH and a bzImage through the Linux boot protocol.
type Kernel struct {
	Path   string
	Initrd string
	Params []string
}

// Args implements Option.
func (k Kernel) Args(*FDs) ([]string, error) {
	if err := checkPath("kernel", "path", k.Path); err != nil {
		return nil, err
	}
	args := []string{"-kernel", k.Path}
	if k.Initrd != "" {
		args = append(args, "-initrd", k.Initrd)
	}
	for _, w := range k.Params {
		if w == "" || strings.ContainsAny(w, " \t\n") {
			return nil, fmt.Errorf("kernel: param %q is not one word", w)
		}
	}
	if len(k.Params) > 0 {
		args = append(args, "-append", strings.Join(k.Params, " "))
	}
	return args, nil
}

// Flags are the switches that keep QEMU from adding anything we did not ask
// for and from outliving its guest.
type Flags struct {
	NoDefaults   bool // -nodefaults: no default devices
	NoUserConfig bool // -no-user-config: ignore /etc/qemu
	NoGraphic    bool // -nographic: no display
	NoReboot     bool // -no-reboot: a guest reboot ends QEMU
	Paused       bool // -S: do not start the vCPUs
}

// Args implements Option.
func (f Flags) Args(*FDs) ([]string, error) {
	var args []string
	for _, fl := range []struct {
		on  bool
		arg string
	}{
		{f.NoDefaults, "-nodefaults"}, {f.NoUserConfig, "-no-user-config"},
		{f.NoGraphic, "-nographic"}, {f.NoReboot, "-no-reboot"}, {f.Paused, "-S"},
	} {
		if fl.on {
			args = append(args, fl.arg)
		}
	}
	return args, nil
}

// Name is -name: the guest's name in QEMU's messages and process title.
type Name struct {
	Guest string
}

// Args implements Option.
func (n Name) Args(*FDs) ([]string, error) {
	if n.Guest == "" {
		return nil, fmt.Errorf("name: guest name is empty")
	}
	return []string{"-name", escape(n.Guest)}, nil
}
