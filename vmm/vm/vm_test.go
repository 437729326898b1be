package vm

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/joeyrt/joey/internal/tap"
	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/vmm/kvm"
	"github.com/joeyrt/joey/vmm/legacy"
	"github.com/joeyrt/joey/vmm/pci"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
	"github.com/joeyrt/joey/vmm/virtio/vsock"
)

// requireKVM skips (or fails) unless /dev/kvm opens. Building a VM needs
// KVM; running a stock kernel needs hardware KVM (see test/nested).
func requireKVM(t *testing.T) {
	t.Helper()
	s, err := kvm.Open("")
	if err != nil {
		testutil.Unavailable(t, "no usable /dev/kvm: "+err.Error())
	}
	s.Close()
}

func TestBadConfigIsRefusedNamingTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{VCPUs: 0, MemoryMiB: 128, Kernel: "/k"}, "vcpus"},
		{Config{VCPUs: 1, MemoryMiB: 16, Kernel: "/k"}, "memory"},
		{Config{VCPUs: 1, MemoryMiB: 4096, Kernel: "/k"}, "memory"},
		{Config{VCPUs: 1, MemoryMiB: 128}, "kernel"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
}

func TestNewAssemblesTheDevicesAndCloseReleasesThem(t *testing.T) {
	requireKVM(t)
	img := testutil.GuestImage(t)
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := New(Config{
		VCPUs: 2, MemoryMiB: 256,
		Kernel: filepath.Join(img, "vmlinux"), Initrd: filepath.Join(img, "initrd.img"),
		Ports:  []string{"agent.0", "console.1"},
		RNG:    true,
		Shares: []Share{{Tag: "share", Dir: t.TempDir()}},
		Disks:  []Disk{{Path: disk, ReadOnly: true, Serial: "d0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"agent.0", "console.1"} {
		if _, err := v.Port(name); err != nil {
			t.Errorf("Port(%s): %v", name, err)
		}
	}
	if _, err := v.Port("nope"); err == nil {
		t.Error("Port of an unknown name succeeded")
	}
	if err := v.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestAFailedNewReleasesWhatItMade(t *testing.T) {
	requireKVM(t)
	img := testutil.GuestImage(t)
	fds := openFDs(t)
	for _, cfg := range []Config{
		{VCPUs: 1, MemoryMiB: 128, Kernel: "/nonexistent/vmlinux"},
		{VCPUs: 1, MemoryMiB: 128, Kernel: filepath.Join(img, "vmlinux"), Ports: []string{"a", "a"}},
		{VCPUs: 1, MemoryMiB: 128, Kernel: filepath.Join(img, "vmlinux"), Disks: []Disk{{Path: "/nonexistent"}}},
		{VCPUs: 1, MemoryMiB: 128, Kernel: filepath.Join(img, "vmlinux"), Shares: []Share{{Tag: "s", Dir: "/nonexistent"}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if after := openFDs(t); after != fds {
		t.Fatalf("%d open files before, %d after failed News", fds, after)
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestOnlyAByteAtCF9IsTheResetRegister(t *testing.T) {
	bus, err := pci.NewBus(pciWindowBase, pciWindowSize)
	if err != nil {
		t.Fatal(err)
	}
	resets := 0
	p := &cf8Ports{bus: bus, reset: legacy.NewResetControl(func() { resets++ })}
	// Linux's conf1 probe: a byte to 0xCFB, a dword to 0xCF8 read back.
	if err := p.WritePort(3, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := p.WritePort(0, []byte{0, 0, 0, 0x80}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if err := p.ReadPort(0, got); err != nil || string(got) != "\x00\x00\x00\x80" {
		t.Fatalf("CONFIG_ADDRESS reads % x (%v), want the dword written", got, err)
	}
	// reboot=pci: 0x02 then 0x06 to 0xCF9 resets.
	for _, b := range []byte{0x02, 0x06} {
		if err := p.WritePort(1, []byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	if resets != 1 {
		t.Fatalf("%d resets after writing 0x06 to 0xCF9, want 1", resets)
	}
}

// TestAddNICPlugsVirtioNetIntoTheNextFreeSlot: a NIC added after New (as
// at hotplug) is a modern virtio-net function in a slot of its own, found
// by a driver enumerating the bus and carrying the MAC; once the VM is
// closed AddNIC refuses and still takes the TAP.
func TestAddNICPlugsVirtioNetIntoTheNextFreeSlot(t *testing.T) {
	requireKVM(t)
	img := testutil.GuestImage(t)
	ns := testutil.NewNetNS(t)
	newTAP := func(name string) *os.File {
		tp, err := tap.Create(context.Background(), tap.Options{Name: name, Queues: 1, VnetHdr: true, NetNS: ns})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tp.Close() })
		return tp.TakeFiles()[0]
	}
	v, err := New(Config{VCPUs: 1, MemoryMiB: 128, Kernel: filepath.Join(img, "vmlinux"), RNG: true})
	if err != nil {
		t.Fatal(err)
	}
	mac := net.HardwareAddr{0x02, 0x4a, 0, 0, 0, 7}
	slot, err := v.AddNIC(NIC{TAP: newTAP("jv-hot0"), MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	if slot != 2 {
		t.Errorf("NIC in slot %d, want 2 (after the host bridge and the rng)", slot)
	}
	d := virtiotest.Attach(t, v.bus, pciWindowBase, slot, v.Memory(), virtiotest.NewAlloc(0x10000, 128<<20))
	if id := d.ConfigRead(pci.RegVendorID, 4) >> 16; id != 0x1041 {
		t.Errorf("device id %#x, want virtio-net's 0x1041", id)
	}
	got := make([]byte, 6)
	d.ReadConfig(0, got)
	if !bytes.Equal(got, mac) {
		t.Errorf("device MAC %x, want %s", got, mac)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	late := newTAP("jv-hot1")
	if _, err := v.AddNIC(NIC{TAP: late, MAC: mac}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("AddNIC after Close = %v, want an error saying the VM is closed", err)
	}
	if _, err := late.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the refused NIC's TAP is still open (%v)", err)
	}
}

// TestVsockCIDAddsAVsockDeviceToDialThrough: with VsockCID the VM has a
// virtio-vsock device (a guest that has not set it up yet refuses dials
// with an error to retry on); without, DialVsock says how to get one; a
// CID the spec reserves is refused naming the field.
func TestVsockCIDAddsAVsockDeviceToDialThrough(t *testing.T) {
	requireKVM(t)
	img := testutil.GuestImage(t)
	base := Config{VCPUs: 1, MemoryMiB: 128, Kernel: filepath.Join(img, "vmlinux")}
	with := base
	with.VsockCID = 3
	v, err := New(with)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.DialVsock(context.Background(), 1024); !errors.Is(err, vsock.ErrNotActive) {
		t.Errorf("DialVsock before the guest's driver = %v, want ErrNotActive", err)
	}
	without, err := New(base)
	if err != nil {
		t.Fatal(err)
	}
	defer without.Close()
	if _, err := without.DialVsock(context.Background(), 1024); err == nil || !strings.Contains(err.Error(), "VsockCID") {
		t.Errorf("DialVsock without a device = %v, want an error naming VsockCID", err)
	}
	bad := base
	bad.VsockCID = 2
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "guest_cid") {
		t.Errorf("New with CID 2 = %v, want an error naming guest_cid", err)
	}
}
