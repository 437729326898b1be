package qemu

import (
	"fmt"
	"path/filepath"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/hypervisor/qemu/cmdline"
)

// Names of the files a VM keeps in its StateDir.
const (
	qmpSocketName     = "qmp.sock"
	agentSocketName   = "agent.sock"
	consoleSocketName = "console.sock"
)

// Fixed QEMU ids of the devices every VM may have. Per-device ids are built
// from the caller's device IDs with a prefix, so they start with a letter as
// QEMU wants.
const (
	memBackendID  = "mem0"
	serialCtrlID  = "vser0"
	agentChardev  = "agent"
	consoleChar   = "dbgcon"
	rootPortFmt   = "rp%d"
	blockNodeFmt  = "drive-%s"
	blockDevFmt   = "blk-%s"
	netdevFmt     = "netdev-%s"
	netDevFmt     = "net-%s"
	virtioFSQueue = 1024
)

// plan is what the driver decided for one VM before rendering it.
type plan struct {
	machine  cmdline.MachineType
	accel    string
	stateDir string
	paused   bool // -S: tests that need QEMU's devices but not a running guest
	tscKHz   int  // the host's TSC rate, told to a TCG guest; 0: unknown
}

func (p plan) path(name string) string { return filepath.Join(p.stateDir, name) }

// kernelParams are the driver's own words, before the agent's and the
// caller's: a panic or a reboot ends the VM (with -no-reboot QEMU exits on a
// guest reset, and a triple fault resets any machine), the console goes to
// the serial port when there is a log for it, and a TCG guest is told its
// TSC rate (see tscParams).
func kernelParams(cfg *hypervisor.Config, p plan) []string {
	var w []string
	if cfg.ConsoleLog != "" {
		w = append(w, "console=ttyS0")
	}
	w = append(w, "panic=-1", "reboot=t")
	w = append(w, tscParams(p.accel, p.tscKHz)...)
	w = append(w, cfg.GuestParams()...)
	return append(w, cfg.KernelParams...)
}

// buildCmdline maps a validated Config onto QEMU options. The Netdevs in the
// result hold the caller's TAP files: closing the result closes them.
func buildCmdline(cfg *hypervisor.Config, p plan) *cmdline.Cmdline {
	t := p.machine.Transport()
	m := cmdline.Machine{Type: p.machine}
	if cfg.SharedMemory {
		m.MemoryBackend = memBackendID
	}
	maxCPUs := cfg.MaxVCPUs
	if maxCPUs == 0 {
		maxCPUs = cfg.VCPUs
	}
	c := cmdline.New(m, cmdline.Accelerator{Kind: p.accel}, cpuFor(p.accel),
		cmdline.SMP{CPUs: cfg.VCPUs, MaxCPUs: maxCPUs}, cmdline.Memory{SizeMiB: cfg.MemoryMiB})
	if cfg.SharedMemory {
		// /dev/shm is a tmpfs every host has; QEMU maps an unlinked file
		// there that vhost-user daemons receive by fd.
		c.Add(cmdline.MemoryBackendFile{ID: memBackendID, SizeMiB: cfg.MemoryMiB, Path: "/dev/shm", Share: true})
	}
	c.Add(
		cmdline.Flags{NoDefaults: true, NoUserConfig: true, NoGraphic: true, NoReboot: true, Paused: p.paused},
		cmdline.Name{Guest: "joey-" + cfg.ID},
		cmdline.Kernel{Path: cfg.Kernel, Initrd: cfg.Initrd, Params: kernelParams(cfg, p)},
	)
	if cfg.ConsoleLog != "" {
		c.Add(cmdline.SerialFile{ID: "console", Path: cfg.ConsoleLog})
	}
	c.Add(cmdline.QMPSocket{Path: p.path(qmpSocketName)})
	for i := range cfg.HotplugSlots {
		c.Add(cmdline.PCIeRootPort{ID: fmt.Sprintf(rootPortFmt, i), Chassis: i + 1})
	}

	if !cfg.AgentChannel.IsVsock() || cfg.DebugConsole {
		c.Add(cmdline.DeviceVirtioSerial{ID: serialCtrlID, Transport: t})
	}
	if cfg.AgentChannel.IsVsock() {
		c.Add(cmdline.DeviceVhostVsock{ID: "vsock0", GuestCID: cfg.AgentChannel.GuestCID, Transport: t})
	} else {
		c.Add(cmdline.ChardevSocket{ID: agentChardev, Path: p.path(agentSocketName), Server: true},
			cmdline.DeviceVirtSerialPort{ID: agentChardev + "-port", Serial: serialCtrlID, Chardev: agentChardev, Name: cfg.AgentChannel.PortName()})
	}
	if cfg.DebugConsole {
		c.Add(cmdline.ChardevSocket{ID: consoleChar, Path: p.path(consoleSocketName), Server: true},
			cmdline.DeviceVirtSerialPort{ID: consoleChar + "-port", Serial: serialCtrlID, Chardev: consoleChar, Name: hypervisor.DebugConsolePort})
	}

	for i, fs := range cfg.SharedFS {
		switch fs.Kind {
		case hypervisor.SharedFS9P:
			id := fmt.Sprintf("fs%d", i)
			c.Add(cmdline.FSDev{ID: id, Path: fs.HostPath, ReadOnly: fs.ReadOnly},
				cmdline.DeviceVirtio9P{ID: id + "-9p", FSDev: id, MountTag: fs.Tag, Transport: t})
		case hypervisor.SharedFSVirtioFS:
			id := fmt.Sprintf("vfs%d", i)
			c.Add(cmdline.ChardevSocket{ID: id + "-chr", Path: fs.Socket},
				cmdline.DeviceVhostUserFS{ID: id, Chardev: id + "-chr", Tag: fs.Tag, QueueSize: virtioFSQueue, Transport: t})
		}
	}
	for _, b := range cfg.Block {
		node := fmt.Sprintf(blockNodeFmt, b.ID)
		c.Add(cmdline.Blockdev{NodeName: node, Path: b.Path, ReadOnly: b.ReadOnly},
			cmdline.DeviceVirtioBlk{ID: fmt.Sprintf(blockDevFmt, b.ID), Drive: node, Serial: b.ID, Transport: t})
	}
	for _, n := range cfg.Net {
		nd := fmt.Sprintf(netdevFmt, n.ID)
		c.Add(cmdline.Netdev{ID: nd, TapFiles: n.TapFiles, VhostFiles: n.VhostFiles},
			cmdline.DeviceVirtioNet{ID: fmt.Sprintf(netDevFmt, n.ID), Netdev: nd, MAC: n.MAC, MTU: n.MTU, Queues: len(n.TapFiles), Transport: t})
	}
	if cfg.RNG {
		c.Add(cmdline.DeviceVirtioRNG{ID: "rng0", Transport: t})
	}
	return c
}
