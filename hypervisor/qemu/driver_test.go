package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/internal/kvmdetect"
)

func TestStartFailureCarriesQEMUsWordsAndLeavesNothing(t *testing.T) {
	d := testDriver(t, true)
	warmUpNetpoll(t)
	dir := shortDir(t)
	tests := []struct {
		name   string
		change func(c *hypervisor.Config)
		want   string
	}{
		{"missing kernel", func(c *hypervisor.Config) { c.Kernel = filepath.Join(dir, "no-vmlinux") },
			"could not open kernel file"},
		{"missing 9p directory", func(c *hypervisor.Config) {
			c.SharedFS = []hypervisor.SharedFS{{Tag: "share", Kind: hypervisor.SharedFS9P, HostPath: filepath.Join(dir, "no-share")}}
		}, "cannot initialize fsdev"},
	}
	kernel := fakeKernel(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fds := openFDs(t)
			cfg := baseConfig()
			cfg.Kernel, cfg.Initrd = kernel, ""
			cfg.StateDir = filepath.Join(dir, "vm")
			tt.change(&cfg)
			vm, err := d.Start(testCtx(t, 30*time.Second), &cfg)
			if err == nil {
				vm.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "start vm vm1: qemu exited during start") {
				t.Fatalf("error %q does not carry QEMU's %q", err, tt.want)
			}
			if _, err := os.Stat(cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("state dir left behind (stat: %v)", err)
			}
			if kids := children(t); len(kids) != 0 {
				t.Fatalf("child processes left behind: %v", kids)
			}
			if n := openFDs(t); n != fds {
				t.Fatalf("%d fds open before Start, %d after", fds, n)
			}
		})
	}
}

func TestStartRejectsABadConfigBeforeRunningQEMU(t *testing.T) {
	d := testDriver(t, true)
	dir := shortDir(t)
	tap, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	tests := []struct {
		name   string
		change func(c *hypervisor.Config)
		want   string
	}{
		{"invalid config", func(c *hypervisor.Config) { c.VCPUs = 0 }, "vcpus must be ≥ 1 (got 0)"},
		{"unknown machine", func(c *hypervisor.Config) { c.Machine = "virt" }, `machine "virt" is not one of microvm, q35, pc`},
		{"hotplug on microvm", func(c *hypervisor.Config) { c.Machine, c.HotplugSlots = "microvm", 1 }, "hotplug slots need machine q35"},
		{"kvm where there is none", func(c *hypervisor.Config) { c.Accel = hypervisor.AccelKVM }, "no usable KVM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.detect = func() kvmdetect.Result { return kvmdetect.Result{Kind: kvmdetect.Absent, Reason: "no /dev/kvm"} }
			cfg := baseConfig()
			cfg.StateDir = filepath.Join(dir, "vm")
			cfg.Net = []hypervisor.NetDevice{{ID: "eth0", TapFiles: []*os.File{tap}}}
			tt.change(&cfg)
			_, err := d.Start(testCtx(t, 10*time.Second), &cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if _, err := os.Stat(cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("state dir created (stat: %v)", err)
			}
			if _, err := tap.Stat(); !errors.Is(err, os.ErrClosed) {
				t.Fatal("the tap file handed to Start is still open")
			}
		})
	}
}

func TestStartRefusesAnExistingStateDirAndKeepsIt(t *testing.T) {
	d := testDriver(t, true)
	cfg := baseConfig()
	cfg.Kernel, cfg.Initrd = fakeKernel(t), ""
	cfg.StateDir = filepath.Join(shortDir(t), "vm")
	mine := filepath.Join(cfg.StateDir, "precious")
	if err := os.MkdirAll(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := d.Start(testCtx(t, 10*time.Second), &cfg)
	if err == nil || !strings.Contains(err.Error(), "must not exist yet") {
		t.Fatalf("error %v, want the state dir refused", err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Fatalf("someone else's state dir was touched: %v", err)
	}
}

// pausedConfig is a VM with every boot device QEMU here can serve without a
// helper daemon (virtio-fs needs virtiofsd, a Net device needs root).
func pausedConfig(t *testing.T, machine string) hypervisor.Config {
	dir := shortDir(t)
	share := filepath.Join(dir, "share")
	disk := filepath.Join(dir, "disk.img")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig()
	cfg.Machine = machine
	cfg.Kernel, cfg.Initrd = fakeKernel(t), ""
	cfg.StateDir = filepath.Join(dir, "vm")
	cfg.ConsoleLog = filepath.Join(dir, "console.log")
	cfg.VCPUs, cfg.MaxVCPUs = 1, 2
	cfg.SharedMemory = true
	cfg.DebugConsole = true
	cfg.RNG = true
	cfg.SharedFS = []hypervisor.SharedFS{{Tag: "share", Kind: hypervisor.SharedFS9P, HostPath: share}}
	cfg.Block = []hypervisor.BlockDevice{{ID: "disk0", Path: disk, ReadOnly: true}}
	return cfg
}

func TestQEMUAcceptsEveryBootDeviceAndStopLeavesNothing(t *testing.T) {
	d := testDriver(t, true)
	warmUpNetpoll(t)
	for _, machine := range []string{"microvm", "q35", "pc"} {
		t.Run(machine, func(t *testing.T) {
			fds := openFDs(t)
			cfg := pausedConfig(t, machine)
			ctx := testCtx(t, 30*time.Second)
			v, err := d.Start(ctx, &cfg)
			if err != nil {
				t.Fatal(err)
			}
			qv := v.(*vm)
			st, err := qv.qmp.QueryStatus(ctx)
			if err != nil || st.Status != "prelaunch" {
				t.Fatalf("query-status: %+v, %v", st, err)
			}
			if m, err := qv.qmp.QueryMemorySizeSummary(ctx); err != nil || m.BaseMemory != 256<<20 {
				t.Fatalf("memory: %+v, %v", m, err)
			}
			for name, dial := range map[string]func(context.Context) (interface{ Close() error }, error){
				"agent":   func(ctx context.Context) (interface{ Close() error }, error) { return v.AgentConn(ctx) },
				"console": func(ctx context.Context) (interface{ Close() error }, error) { return qv.DebugConsole(ctx) },
			} {
				c, err := dial(ctx)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				c.Close()
			}
			pid := v.Pid()
			if err := v.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-v.Wait():
			default:
				t.Fatal("Wait not closed after Stop")
			}
			if err := v.ExitErr(); err != nil {
				t.Fatalf("QEMU did not quit cleanly: %v", err)
			}
			if !processGone(pid) {
				t.Fatalf("qemu pid %d still exists", pid)
			}
			if _, err := os.Stat(cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("state dir left behind (stat: %v)", err)
			}
			if err := v.Stop(ctx); err != nil {
				t.Fatalf("second Stop: %v", err)
			}
			if n := openFDs(t); n != fds {
				t.Fatalf("%d fds open before Start, %d after Stop", fds, n)
			}
		})
	}
}

func TestStopKillsAQEMUThatDoesNotQuit(t *testing.T) {
	d := testDriver(t, true)
	cfg := baseConfig()
	cfg.Kernel, cfg.Initrd = fakeKernel(t), ""
	cfg.StateDir = filepath.Join(shortDir(t), "vm")
	v, err := d.Start(testCtx(t, 30*time.Second), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A stopped process cannot answer QMP; only SIGKILL ends it.
	if err := syscall.Kill(v.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := v.Stop(testCtx(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := v.ExitErr(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("ExitErr %v, want the kill", err)
	}
	if _, err := os.Stat(cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state dir left behind (stat: %v)", err)
	}
}

func TestStopAfterQEMUExitedAloneStillCleansUp(t *testing.T) {
	d := testDriver(t, true)
	cfg := baseConfig()
	cfg.Kernel, cfg.Initrd = fakeKernel(t), ""
	cfg.StateDir = filepath.Join(shortDir(t), "vm")
	ctx := testCtx(t, 30*time.Second)
	v, err := d.Start(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(v.Pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.Wait():
	case <-ctx.Done():
		t.Fatal("QEMU did not exit on SIGTERM")
	}
	if _, err := v.AgentConn(ctx); err == nil {
		t.Fatal("AgentConn succeeded on an exited VM")
	}
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state dir left behind (stat: %v)", err)
	}
}

func TestCapabilitiesDescribeThisHost(t *testing.T) {
	d := testDriver(t, false)
	c, err := d.Capabilities(testCtx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := resolveAccel(hypervisor.AccelAuto, kvmdetect.Detect())
	if string(c.Accel) != want.kind || c.AccelReason == "" {
		t.Fatalf("accel %q (%q), want %q", c.Accel, c.AccelReason, want.kind)
	}
	if !c.Pause.Available || !c.Hotplug.Available || c.Resize.Available || c.Snapshot.Available {
		t.Fatalf("abilities %+v", c)
	}
	if !slices.Contains(c.SharedFS, hypervisor.SharedFS9P) {
		t.Fatalf("shared fs %q lacks 9p", c.SharedFS)
	}
	_, statErr := os.Stat(d.vsockDevice)
	if slices.Contains(c.AgentChannels, hypervisor.ChannelVsock) != (statErr == nil) {
		t.Fatalf("channels %q disagree with %s (stat: %v)", c.AgentChannels, d.vsockDevice, statErr)
	}
	if !slices.Contains(c.AgentChannels, hypervisor.ChannelSerial) {
		t.Fatalf("channels %q lack serial", c.AgentChannels)
	}
}

func TestStartWithVsockNeedsVhostVsock(t *testing.T) {
	d := testDriver(t, true)
	d.vsockDevice = filepath.Join(shortDir(t), "no-vhost-vsock")
	cfg := baseConfig()
	cfg.StateDir = filepath.Join(shortDir(t), "vm")
	cfg.AgentChannel = hypervisor.AgentChannel{Kind: hypervisor.ChannelVsock, GuestCID: 3, Port: 1024}
	_, err := d.Start(testCtx(t, 10*time.Second), &cfg)
	if err == nil || !strings.Contains(err.Error(), "use the serial channel") {
		t.Fatalf("error %v", err)
	}
}
