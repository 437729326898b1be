// Command joey-agent is PID 1 of a joey guest: it prepares the VM, then
// serves the agent protocol on the agent channel and runs the containers the
// host asks for with runc's libcontainer.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // runs before Go starts in the container's init
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/guest/boot"
	"github.com/joeyrt/joey/guest/channel"
	"github.com/joeyrt/joey/guest/container"
	"github.com/joeyrt/joey/guest/netconf"
	"github.com/joeyrt/joey/guest/reaper"
	"github.com/joeyrt/joey/guest/server"
	"github.com/joeyrt/joey/internal/version"
)

func main() {
	// libcontainer re-executes this binary as each container's init.
	container.MaybeInit()

	showVersion := flag.Bool("version", false, "print the version and exit")
	channelFlag := flag.String("channel", "", "agent channel (serial:NAME or vsock:PORT); default from the kernel command line")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Version)
		return
	}
	if err := run(*channelFlag); err != nil {
		fmt.Fprintf(os.Stderr, "joey-agent: %v\n", err)
		if os.Getpid() == 1 {
			// PID 1 must not exit: the kernel would panic without saying why.
			// Power off instead, so the host sees the VM end.
			boot.PowerOff()
		}
		os.Exit(1)
	}
}

func run(channelFlag string) error {
	ctx := context.Background()
	pid1 := os.Getpid() == 1
	var loaded []string
	if pid1 {
		if err := boot.MountBase(); err != nil {
			return err
		}
		var uts unix.Utsname
		unix.Uname(&uts)
		var err error
		loaded, err = boot.LoadModules(boot.ModuleList, filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:])))
		if err != nil {
			return err
		}
	}
	settings := boot.ReadSettings()
	if channelFlag != "" {
		settings.Channel = channelFlag
	}
	if err := log.SetLevel(settings.LogLevel); err != nil {
		log.G(ctx).WithError(err).Warn("ignoring joey.log")
	}

	r, err := reaper.New()
	if err != nil {
		return err
	}
	network := netconf.New(nil)
	if pid1 {
		if err := network.SetupLoopback(ctx); err != nil {
			return err
		}
		// The built-in VMM hot-adds NICs on a PCI bus without a hotplug
		// controller: the guest sees one only after a rescan. Outside a VM
		// the agent must not rescan the host's buses.
		network.SetRescan(func() error { return netconf.RescanPCI(netconf.PCIRescan) })
	}
	mgr, err := container.NewManager("/run/joey/containers", r, container.Options{NoPivotRoot: container.RootIsRamfs()})
	if err != nil {
		return err
	}
	defer mgr.Close()

	powerOff := func() {
		mgr.Close()
		if pid1 {
			boot.PowerOff()
		}
		os.Exit(0)
	}
	srv := server.New(server.Config{
		Containers:    mgr,
		Network:       network,
		OOM:           mgr.OOMEvents(),
		LoadedModules: loaded,
		PowerOff:      powerOff,
	})

	if settings.DebugConsole != "" {
		start := func(cmd *exec.Cmd) (<-chan int, error) { return r.StartCmd(cmd) }
		if err := boot.RunDebugConsole(ctx, settings.DebugConsole, start); err != nil {
			log.G(ctx).WithError(err).Warn("debug console")
		}
	}

	l, err := channel.Listen(ctx, settings.Channel)
	if err != nil {
		return err
	}
	ts, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("ttrpc server: %w", err)
	}
	protocol.RegisterAgentService(ts, srv)
	log.G(ctx).WithField("channel", settings.Channel).WithField("modules", len(loaded)).Info("joey-agent serving")
	return ts.Serve(ctx, l)
}
