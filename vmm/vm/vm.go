// Package vm assembles the built-in VMM's parts into one bootable virtual
// machine: a machine with the in-kernel irqchip, the legacy devices a stock
// kernel touches (i8250 console, i8042 and 0xCF9 resets, RTC, POST), an MP
// table for the CPUs, a PCI host on configuration mechanism 1 with virtio-pci
// devices (console ports, rng, 9p shares, block, net), and a PVH boot of an
// ELF vmlinux. It is what hypervisor/builtin drives; it knows nothing of
// containers.
package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/joeyrt/joey/vmm/boot"
	"github.com/joeyrt/joey/vmm/legacy"
	"github.com/joeyrt/joey/vmm/machine"
	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/mptable"
	"github.com/joeyrt/joey/vmm/pci"
	"github.com/joeyrt/joey/vmm/serial"
	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/blk"
	"github.com/joeyrt/joey/vmm/virtio/console"
	virtionet "github.com/joeyrt/joey/vmm/virtio/net"
	"github.com/joeyrt/joey/vmm/virtio/rng"
	"github.com/joeyrt/joey/vmm/virtio/virtiopci"
	"github.com/joeyrt/joey/vmm/virtio/vsock"
)

// The PCI window: BARs live from 3 GiB (where guest RAM must end, see
// memory.Limit) for 256 MiB, far below the IOAPIC at 0xFEC00000.
//
// Above 4 GiB, up to the 40 address bits Linux takes as the root bus's
// reach when no firmware describes it, the bus decodes the BARs the guest
// moves there: Linux reassigns the 64-bit BARs of a device found by a
// rescan (a hot-added NIC) from 4 GiB up.
const (
	pciWindowBase = 0xC000_0000
	pciWindowSize = 0x1000_0000
	pciHighBase   = 1 << 32
	pciHighSize   = 1<<40 - pciHighBase
	// com1IRQ is the ISA interrupt of the first serial port.
	com1IRQ = 4
)

// Config describes one VM.
type Config struct {
	// VCPUs and MemoryMiB size the machine.
	VCPUs     int
	MemoryMiB int
	// Kernel is an ELF vmlinux with a PVH entry note; Initrd is optional.
	Kernel, Initrd string
	// Cmdline is the kernel command line, without the console setting
	// (the VM adds console=ttyS0).
	Cmdline string
	// Console receives the guest's serial console; nil discards it.
	Console io.Writer
	// Ports are virtio-console port names; Port(name) is the host side.
	Ports []string
	// RNG adds a virtio-rng device.
	RNG bool
	// Shares are directories served to the guest over virtio-9p.
	Shares []Share
	// Disks are virtio-blk devices.
	Disks []Disk
	// NICs are virtio-net devices on TAP queues.
	NICs []NIC
	// Device is the KVM device node; "" is /dev/kvm.
	Device string
	// VsockCID, when not 0, adds a virtio-vsock device with this guest
	// CID; DialVsock connects to the guest's ports through it.
	VsockCID uint64
	// IOEventFDs has KVM take the guests' queue kicks through ioeventfds
	// instead of MMIO exits. Off by default: one CI run saw an agent
	// request sit unanswered until the next one, a lost kick or
	// interrupt that only shows when devices run concurrently with the
	// guest; until that is understood the exit path, where the guest's
	// vCPU waits for the device, stays the default.
	IOEventFDs bool
}

// Share is one host directory exported under a 9p mount tag.
type Share struct {
	Tag, Dir string
	ReadOnly bool
}

// Disk is one block device backed by a file.
type Disk struct {
	Path     string
	ReadOnly bool
	Serial   string
}

// NIC is one network device on an open TAP queue (opened with a vnet
// header, non-blocking). Once New succeeds the VM owns TAP; on error the
// caller still does.
type NIC struct {
	TAP *os.File
	MAC net.HardwareAddr
	MTU int
}

// VM is an assembled machine. New builds it, Start runs it.
type VM struct {
	m     *machine.Machine
	cons  *console.Device
	vsock *vsock.Device
	bus   *pci.Bus
	// devMu guards closers, transports and closed: AddNIC may race Close.
	devMu      sync.Mutex
	closers    []io.Closer
	transports []*virtiopci.Transport
	closed     bool
	// ioeventfds is Config.IOEventFDs.
	ioeventfds bool
	// started is set by Start (one goroutine owns the VM's lifecycle).
	started bool
	// unhandled counts accesses no device claimed, for Unhandled.
	mu        sync.Mutex
	unhandled map[string]int
}

// New creates the machine, its devices and the loaded kernel. Nothing runs
// until Start; on error everything made so far is released.
func New(cfg Config) (_ *VM, retErr error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	v := &VM{unhandled: map[string]int{}, ioeventfds: cfg.IOEventFDs}
	m, err := machine.New(machine.Config{
		MemorySize: uint64(cfg.MemoryMiB) << 20,
		VCPUs:      cfg.VCPUs,
		IRQChip:    true,
		Unhandled:  v.countUnhandled,
		Device:     cfg.Device,
	})
	if err != nil {
		return nil, fmt.Errorf("new vm: %w", err)
	}
	v.m = m
	defer func() {
		if retErr != nil {
			v.Close()
		}
	}()
	if err := v.addLegacy(cfg.Console); err != nil {
		return nil, fmt.Errorf("new vm: %w", err)
	}
	if err := v.addPCI(cfg); err != nil {
		return nil, fmt.Errorf("new vm: %w", err)
	}
	if err := v.load(cfg); err != nil {
		return nil, fmt.Errorf("new vm: %w", err)
	}
	return v, nil
}

func (c *Config) validate() error {
	switch {
	case c.VCPUs < 1 || c.VCPUs > 254:
		return fmt.Errorf("vm config: vcpus %d: want 1 to 254", c.VCPUs)
	case c.MemoryMiB < 64 || uint64(c.MemoryMiB)<<20 > memory.Limit:
		return fmt.Errorf("vm config: memory %d MiB: want 64 to %d", c.MemoryMiB, memory.Limit>>20)
	case c.Kernel == "":
		return errors.New("vm config: kernel is empty: give the path of an ELF vmlinux")
	}
	return nil
}

// addLegacy puts the ISA devices a stock kernel probes on the port bus.
func (v *VM) addLegacy(out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	m := v.m
	com1 := serial.New(out, func(high bool) error { return m.IRQLine(com1IRQ, high) })
	kbd := legacy.NewI8042(v.reset("i8042 reset"))
	for _, d := range []struct {
		port, n uint16
		dev     machine.PortDevice
	}{
		{0x3f8, serial.Ports, com1},
		{legacy.I8042DataPort, 1, kbd.DataPort()},
		{legacy.I8042CommandPort, 1, kbd.CommandPort()},
		{legacy.POSTPort, 1, legacy.POST{}},
		{legacy.RTCIndexPort, legacy.RTCPorts, legacy.NewRTC(nil)},
	} {
		if err := m.AddPort(d.port, d.n, d.dev); err != nil {
			return err
		}
	}
	return nil
}

// reset returns what a guest-initiated reset (the i8042's pulse, a write
// to 0xCF9) calls: it ends the machine as a reboot, naming cause.
func (v *VM) reset(cause string) func() {
	m := v.m
	return func() { m.Finish(machine.End{Reason: machine.Reboot, Cause: cause}) }
}

// addPCI builds the PCI bus and one virtio-pci function per device.
func (v *VM) addPCI(cfg Config) error {
	bus, err := pci.NewBus(pciWindowBase, pciWindowSize)
	if err != nil {
		return err
	}
	rc := legacy.NewResetControl(v.reset("0xcf9 reset"))
	if err := v.m.AddPort(pci.ConfigAddressPort, pci.Ports, &cf8Ports{bus: bus, reset: rc}); err != nil {
		return err
	}
	if err := v.m.AddMMIO(pciWindowBase, pciWindowSize, bus.MMIO()); err != nil {
		return err
	}
	high, err := bus.Decode(pciHighBase, pciHighSize)
	if err != nil {
		return err
	}
	if err := v.m.AddMMIO(pciHighBase, pciHighSize, high); err != nil {
		return err
	}
	v.bus = bus
	var devs []virtio.Device
	if len(cfg.Ports) > 0 {
		ports := make([]console.Port, len(cfg.Ports))
		for i, n := range cfg.Ports {
			ports[i] = console.Port{Name: n}
		}
		c, err := console.New(ports)
		if err != nil {
			return err
		}
		v.cons = c
		v.closers = append(v.closers, c)
		devs = append(devs, c)
	}
	if cfg.RNG {
		devs = append(devs, rng.New())
	}
	if cfg.VsockCID != 0 {
		d, err := vsock.New(cfg.VsockCID)
		if err != nil {
			return err
		}
		v.vsock = d
		v.closers = append(v.closers, d)
		devs = append(devs, d)
	}
	shares, err := v.shareDevices(cfg.Shares)
	if err != nil {
		return err
	}
	devs = append(devs, shares...)
	for _, disk := range cfg.Disks {
		flag := os.O_RDWR
		if disk.ReadOnly {
			flag = os.O_RDONLY
		}
		f, err := os.OpenFile(disk.Path, flag, 0)
		if err != nil {
			return fmt.Errorf("disk: %w", err)
		}
		d, err := blk.New(f, blk.Options{ReadOnly: disk.ReadOnly, Serial: disk.Serial})
		if err != nil {
			f.Close()
			return fmt.Errorf("disk %s: %w", disk.Path, err)
		}
		v.closers = append(v.closers, d) // the device owns f now
		devs = append(devs, d)
	}
	for _, n := range cfg.NICs {
		d, err := virtionet.New(n.TAP, virtionet.Options{MAC: n.MAC, MTU: n.MTU})
		if err != nil {
			return fmt.Errorf("nic %s: %w", n.MAC, err)
		}
		v.closers = append(v.closers, d) // the device owns the TAP now
		devs = append(devs, d)
	}
	for _, d := range devs {
		if _, err := v.plug(d); err != nil {
			return err
		}
	}
	return nil
}

// plug puts d on the PCI bus behind a virtio-pci transport (whose queue
// kicks come through KVM ioeventfds with Config.IOEventFDs). The
// transport is closed before the devices (closers run in reverse).
func (v *VM) plug(d virtio.Device) (slot int, err error) {
	t, err := virtiopci.New(d, v.m.Memory(), v.m)
	if err != nil {
		return 0, fmt.Errorf("virtio-pci %v: %w", d.Type(), err)
	}
	if v.ioeventfds {
		if err := t.UseIOEventFDs(v.m); err != nil {
			return 0, err
		}
	}
	if slot, err = v.bus.Add(t); err != nil {
		t.Close()
		return 0, fmt.Errorf("virtio-pci %v: %w", d.Type(), err)
	}
	v.closers = append(v.closers, t)
	v.transports = append(v.transports, t)
	return slot, nil
}

// Kicks counts the queue notifications of every virtio device: those KVM
// passed through an ioeventfd and those that exited to the VMM.
func (v *VM) Kicks() (viaEventFD, viaExit uint64) {
	v.devMu.Lock()
	defer v.devMu.Unlock()
	for _, t := range v.transports {
		fd, exit := t.Kicks()
		viaEventFD += fd
		viaExit += exit
	}
	return viaEventFD, viaExit
}

// AddNIC adds a virtio-net device to the VM, running or not, in the next
// free PCI slot and returns the slot. There is no hotplug controller (no
// ACPI, no PCIe port): the guest finds a device added after its boot when
// it rescans the bus (/sys/bus/pci/rescan; joey's agent does so when asked
// to configure a MAC it does not see). The VM owns n.TAP from the call on,
// whether AddNIC succeeds or not.
func (v *VM) AddNIC(n NIC) (slot int, err error) {
	v.devMu.Lock()
	defer v.devMu.Unlock()
	if v.closed {
		n.TAP.Close()
		return 0, fmt.Errorf("add nic %s: the VM is closed", n.MAC)
	}
	d, err := virtionet.New(n.TAP, virtionet.Options{MAC: n.MAC, MTU: n.MTU})
	if err != nil {
		n.TAP.Close()
		return 0, fmt.Errorf("add nic %s: %w", n.MAC, err)
	}
	v.closers = append(v.closers, d)
	if slot, err = v.plug(d); err != nil {
		v.closers = v.closers[:len(v.closers)-1]
		d.Close()
		return 0, fmt.Errorf("add nic %s: %w", n.MAC, err)
	}
	return slot, nil
}

// cf8Ports shares ports 0xCF8–0xCFF between PCI configuration mechanism 1
// and the reset control register at 0xCF9, as chipsets do: only a byte
// access at 0xCF9 is the reset register (Linux's reboot=pci writes it);
// every other access is the PCI bus's.
type cf8Ports struct {
	bus   *pci.Bus
	reset *legacy.ResetControl
}

const resetControlOffset = legacy.ResetControlPort - pci.ConfigAddressPort

func (p *cf8Ports) ReadPort(offset uint16, data []byte) error {
	if offset == resetControlOffset && len(data) == 1 {
		return p.reset.ReadPort(0, data)
	}
	return p.bus.ReadPort(offset, data)
}

func (p *cf8Ports) WritePort(offset uint16, data []byte) error {
	if offset == resetControlOffset && len(data) == 1 {
		return p.reset.WritePort(0, data)
	}
	return p.bus.WritePort(offset, data)
}

// load writes the MP table, the kernel, its parameters and the vCPU state.
func (v *VM) load(cfg Config) error {
	mem := v.m.Memory()
	if err := mptable.Write(mem, cfg.VCPUs); err != nil {
		return err
	}
	if err := boot.WriteGDT(mem); err != nil {
		return err
	}
	f, err := os.Open(cfg.Kernel)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer f.Close()
	k, err := boot.LoadELF(mem, f)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", cfg.Kernel, err)
	}
	var initrd []byte
	if cfg.Initrd != "" {
		if initrd, err = os.ReadFile(cfg.Initrd); err != nil {
			return fmt.Errorf("initrd: %w", err)
		}
	}
	cmdline := strings.TrimSpace("console=ttyS0 " + cfg.Cmdline)
	si, err := boot.Params(mem, k, cmdline, initrd)
	if err != nil {
		return err
	}
	sup, err := v.m.KVM().SupportedCPUID()
	if err != nil {
		return err
	}
	return boot.SetupVCPUs(v.m.VCPUs(), boot.VCPUConfig{Supported: sup, Entry: k.Entry, StartInfo: si, LAPIC: true})
}

// countUnhandled lets a stock kernel probe hardware that is not there
// (more serial ports, a floppy, ...): reads see all ones, as on real
// buses. The counts show in Unhandled.
func (v *VM) countUnhandled(a machine.Access) error {
	kind := "port"
	if a.MMIO {
		kind = "mmio"
	}
	v.mu.Lock()
	v.unhandled[fmt.Sprintf("%s %#x", kind, a.Addr)]++
	v.mu.Unlock()
	return nil
}

// Unhandled returns how often each unclaimed address was accessed.
func (v *VM) Unhandled() map[string]int {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]int, len(v.unhandled))
	for k, n := range v.unhandled {
		out[k] = n
	}
	return out
}

// Port returns the host side of the named virtio-console port.
func (v *VM) Port(name string) (net.Conn, error) {
	if v.cons == nil {
		return nil, fmt.Errorf("port %q: the VM has no console ports", name)
	}
	return v.cons.Conn(name)
}

// DialVsock connects to port of the guest's vsock (Config.VsockCID).
func (v *VM) DialVsock(ctx context.Context, port uint32) (net.Conn, error) {
	if v.vsock == nil {
		return nil, errors.New("dial vsock: the VM has no vsock device (set Config.VsockCID)")
	}
	return v.vsock.Dial(ctx, port)
}

// Memory is the guest RAM mapping, for measuring the VMM's own footprint.
func (v *VM) Memory() *memory.Memory { return v.m.Memory() }

// Start runs the vCPUs.
func (v *VM) Start() error {
	if err := v.m.Start(); err != nil {
		return err
	}
	v.started = true
	return nil
}

// Done is closed when the VM has ended.
func (v *VM) Done() <-chan struct{} { return v.m.Done() }

// Wait blocks until the VM has ended and reports how.
func (v *VM) Wait() machine.End { return v.m.Wait() }

// Stop ends the VM and waits for it.
func (v *VM) Stop() machine.End { return v.m.Stop() }

// Close stops the VM and releases every device and then the machine: the
// devices' goroutines must be gone before guest RAM is unmapped under them.
func (v *VM) Close() error {
	var errs []error
	if v.m != nil && v.started {
		v.m.Stop()
	}
	v.devMu.Lock()
	v.closed = true
	for i := len(v.closers) - 1; i >= 0; i-- {
		errs = append(errs, v.closers[i].Close())
	}
	v.closers = nil
	v.devMu.Unlock()
	if v.m != nil {
		errs = append(errs, v.m.Close())
	}
	return errors.Join(errs...)
}
