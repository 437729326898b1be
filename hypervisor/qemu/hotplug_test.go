package qemu

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/joeyrt/joey/hypervisor"
)

// parentBus asks QEMU which bus a device sits on. Before the guest runs,
// query-pci cannot see behind root ports; the QOM tree can.
func parentBus(ctx context.Context, t *testing.T, v *vm, device string) string {
	t.Helper()
	var bus string
	err := v.qmp.Execute(ctx, "qom-get", map[string]string{"path": "/machine/peripheral/" + device, "property": "parent_bus"}, &bus)
	if err != nil {
		t.Fatalf("qom-get %s: %v", device, err)
	}
	return bus
}

func startHotplugVM(t *testing.T, slots int) (*hotplugVM, string) {
	t.Helper()
	d := testDriver(t, true)
	dir := shortDir(t)
	cfg := baseConfig()
	cfg.Kernel, cfg.Initrd = fakeKernel(t), ""
	cfg.StateDir = filepath.Join(dir, "vm")
	cfg.HotplugSlots = slots
	v, err := d.Start(testCtx(t, 30*time.Second), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Stop(context.Background()) })
	h, ok := v.(hypervisor.Hotplugger)
	if !ok {
		t.Fatalf("a VM with hotplug slots is a %T, not a Hotplugger", v)
	}
	return h.(*hotplugVM), dir
}

func TestMicrovmDoesNotClaimHotplug(t *testing.T) {
	d := testDriver(t, true)
	cfg := baseConfig()
	cfg.Kernel, cfg.Initrd = fakeKernel(t), ""
	cfg.StateDir = filepath.Join(shortDir(t), "vm")
	v, err := d.Start(testCtx(t, 30*time.Second), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop(context.Background())
	if _, ok := v.(hypervisor.Hotplugger); ok {
		t.Fatal("a microvm VM claims to be a Hotplugger")
	}
	if _, ok := v.(hypervisor.Pauser); !ok {
		t.Fatal("a QEMU VM is not a Pauser")
	}
}

func TestHotplugBlockFillsRootPortsAndWaitsForTheGuestOnRemoval(t *testing.T) {
	h, dir := startHotplugVM(t, 2)
	ctx := testCtx(t, 30*time.Second)
	disk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := h.AddDevice(ctx, hypervisor.BlockDevice{ID: "d0", Path: disk("d0.img"), ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	if bus := parentBus(ctx, t, h.vm, "blk-d0"); bus != "/machine/peripheral/rp0/rp0" {
		t.Fatalf("blk-d0 on %q, want rp0", bus)
	}
	if err := h.AddDevice(ctx, hypervisor.BlockDevice{ID: "d0", Path: disk("again.img")}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("same id twice: %v", err)
	}
	// A failed add gives its slot back: d1 still lands on rp1.
	if err := h.AddDevice(ctx, hypervisor.BlockDevice{ID: "bad", Path: filepath.Join(dir, "missing.img")}); err == nil {
		t.Fatal("a missing image was hot-added")
	}
	if err := h.AddDevice(ctx, hypervisor.BlockDevice{ID: "d1", Path: disk("d1.img")}); err != nil {
		t.Fatal(err)
	}
	if bus := parentBus(ctx, t, h.vm, "blk-d1"); bus != "/machine/peripheral/rp1/rp1" {
		t.Fatalf("blk-d1 on %q, want rp1", bus)
	}
	err := h.AddDevice(ctx, hypervisor.BlockDevice{ID: "d2", Path: disk("d2.img")})
	if err == nil || !strings.Contains(err.Error(), "all hotplug slots are taken") {
		t.Fatalf("third disk on two slots: %v", err)
	}
	if err := h.AddDevice(ctx, hypervisor.BlockDevice{ID: "", Path: disk("x.img")}); err == nil {
		t.Fatal("a device without an ID was accepted")
	}

	// The guest is not running (-S), so it cannot release the disk.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err = h.RemoveDevice(short, "d0")
	if err == nil || !strings.Contains(err.Error(), "the guest has not released it") {
		t.Fatalf("removal without the guest: %v", err)
	}
	if err := h.RemoveDevice(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if bus := parentBus(ctx, t, h.vm, "blk-d0"); bus == "" {
		t.Fatal("blk-d0 vanished")
	}
}

func TestHotplugNetPassesTheTapToQEMU(t *testing.T) {
	tap := openTap(t)
	h, _ := startHotplugVM(t, 1)
	ctx := testCtx(t, 30*time.Second)
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}
	if err := h.AddDevice(ctx, hypervisor.NetDevice{ID: "eth0", TapFiles: []*os.File{tap}, MAC: mac, MTU: 1400}); err != nil {
		t.Fatal(err)
	}
	if _, err := tap.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Fatal("AddDevice left the caller's tap file open")
	}
	if bus := parentBus(ctx, t, h.vm, "net-eth0"); bus != "/machine/peripheral/rp0/rp0" {
		t.Fatalf("net-eth0 on %q, want rp0", bus)
	}
	var got string
	if err := h.qmp.Execute(ctx, "qom-get", map[string]string{"path": "/machine/peripheral/net-eth0", "property": "mac"}, &got); err != nil {
		t.Fatal(err)
	}
	if got != mac.String() {
		t.Fatalf("guest MAC %q, want %q", got, mac)
	}
}

func TestBootNetDevicePassesTheTapAsAnFD(t *testing.T) {
	tap := openTap(t)
	d := testDriver(t, true)
	cfg := baseConfig()
	cfg.Kernel, cfg.Initrd = fakeKernel(t), ""
	cfg.StateDir = filepath.Join(shortDir(t), "vm")
	cfg.Net = []hypervisor.NetDevice{{ID: "eth0", TapFiles: []*os.File{tap}, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 7}}}
	ctx := testCtx(t, 30*time.Second)
	v, err := d.Start(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop(context.Background())
	if _, err := tap.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Fatal("Start left the caller's tap file open")
	}
	var got string
	if err := v.(*vm).qmp.Execute(ctx, "qom-get", map[string]string{"path": "/machine/peripheral/net-eth0", "property": "mac"}, &got); err != nil {
		t.Fatal(err)
	}
	if got != "02:00:00:00:00:07" {
		t.Fatalf("mac %q", got)
	}
}
