package cmdline

import (
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestOptionsRenderExactArgs(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	tests := []struct {
		name string
		opt  Option
		want []string
	}{
		{"microvm", Machine{Type: Microvm}, []string{"-machine", "microvm,x-option-roms=off,isa-serial=on,rtc=on"}},
		{"q35 with shared memory", Machine{Type: Q35, MemoryBackend: "mem0"}, []string{"-machine", "q35,memory-backend=mem0"}},
		{"pc", Machine{Type: PC}, []string{"-machine", "pc"}},
		{"tcg", Accelerator{Kind: "tcg"}, []string{"-accel", "tcg"}},
		{"kvm", Accelerator{Kind: "kvm"}, []string{"-accel", "kvm"}},
		{"cpu max without la57", CPU{Model: "max", Off: []string{"la57"}}, []string{"-cpu", "max,la57=off"}},
		{"cpu host", CPU{Model: "host"}, []string{"-cpu", "host"}},
		{"smp", SMP{CPUs: 2}, []string{"-smp", "2"}},
		{"smp with room", SMP{CPUs: 1, MaxCPUs: 4}, []string{"-smp", "1,maxcpus=4"}},
		{"memory", Memory{SizeMiB: 512}, []string{"-m", "512M"}},
		{"memory with hotplug room", Memory{SizeMiB: 512, Slots: 2, MaxMiB: 2048}, []string{"-m", "512M,slots=2,maxmem=2048M"}},
		{"memory backend", MemoryBackendFile{ID: "mem0", SizeMiB: 256, Path: "/dev/shm", Share: true},
			[]string{"-object", "memory-backend-file,id=mem0,size=256M,mem-path=/dev/shm,share=on"}},
		{"kernel only", Kernel{Path: "/k"}, []string{"-kernel", "/k"}},
		{"kernel initrd params", Kernel{Path: "/k", Initrd: "/i", Params: []string{"console=ttyS0", "quiet"}},
			[]string{"-kernel", "/k", "-initrd", "/i", "-append", "console=ttyS0 quiet"}},
		{"all flags", Flags{NoDefaults: true, NoUserConfig: true, NoGraphic: true, NoReboot: true, Paused: true},
			[]string{"-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-S"}},
		{"no flags", Flags{}, nil},
		{"name with comma", Name{Guest: "a,b"}, []string{"-name", "a,,b"}},
		{"serial file", SerialFile{ID: "console", Path: "/var/log/c,1.log"},
			[]string{"-chardev", "file,id=console,path=/var/log/c,,1.log", "-serial", "chardev:console"}},
		{"qmp", QMPSocket{Path: "/run/vm/qmp.sock"},
			[]string{"-chardev", "socket,id=qmp,path=/run/vm/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control"}},
		{"chardev server", ChardevSocket{ID: "agent", Path: "/run/vm/agent.sock", Server: true},
			[]string{"-chardev", "socket,id=agent,path=/run/vm/agent.sock,server=on,wait=off"}},
		{"chardev client", ChardevSocket{ID: "fs0", Path: "/run/virtiofsd.sock"},
			[]string{"-chardev", "socket,id=fs0,path=/run/virtiofsd.sock"}},
		{"virtio-serial mmio", DeviceVirtioSerial{ID: "vser0", Transport: MMIO}, []string{"-device", "virtio-serial-device,id=vser0"}},
		{"virtio-serial pci on bus", DeviceVirtioSerial{ID: "vser0", Transport: PCI, Bus: "pcie.0"},
			[]string{"-device", "virtio-serial-pci,id=vser0,bus=pcie.0"}},
		{"serial port", DeviceVirtSerialPort{ID: "port0", Serial: "vser0", Chardev: "agent", Name: "agent.0"},
			[]string{"-device", "virtserialport,id=port0,bus=vser0.0,chardev=agent,name=agent.0"}},
		{"virtio-net mmio", DeviceVirtioNet{ID: "net0", Netdev: "nd0", MAC: mac, MTU: 1400, Transport: MMIO},
			[]string{"-device", "virtio-net-device,id=net0,netdev=nd0,mac=02:00:00:00:00:01,host_mtu=1400"}},
		{"virtio-net pci multiqueue", DeviceVirtioNet{ID: "net0", Netdev: "nd0", Queues: 2, Transport: PCI, Bus: "rp0"},
			[]string{"-device", "virtio-net-pci,id=net0,netdev=nd0,mq=on,vectors=6,bus=rp0,romfile="}},
		{"fsdev", FSDev{ID: "fs0", Path: "/srv/share"},
			[]string{"-fsdev", "local,id=fs0,path=/srv/share,security_model=none,multidevs=remap"}},
		{"fsdev read-only", FSDev{ID: "fs0", Path: "/srv", ReadOnly: true},
			[]string{"-fsdev", "local,id=fs0,path=/srv,security_model=none,multidevs=remap,readonly=on"}},
		{"virtio-9p", DeviceVirtio9P{ID: "p9", FSDev: "fs0", MountTag: "share", Transport: MMIO},
			[]string{"-device", "virtio-9p-device,id=p9,fsdev=fs0,mount_tag=share"}},
		{"vhost-user-fs", DeviceVhostUserFS{ID: "vfs0", Chardev: "chfs0", Tag: "rootfs", QueueSize: 1024, Transport: PCI},
			[]string{"-device", "vhost-user-fs-pci,id=vfs0,chardev=chfs0,tag=rootfs,queue-size=1024"}},
		{"blockdev read-only", Blockdev{NodeName: "drive0", Path: "/img,1", ReadOnly: true},
			[]string{"-blockdev", "driver=raw,node-name=drive0,read-only=on,file.driver=file,file.filename=/img,,1"}},
		{"blockdev writable", Blockdev{NodeName: "drive0", Path: "/img"},
			[]string{"-blockdev", "driver=raw,node-name=drive0,read-only=off,file.driver=file,file.filename=/img"}},
		{"virtio-blk", DeviceVirtioBlk{ID: "blk0", Drive: "drive0", Serial: "disk0", Transport: MMIO},
			[]string{"-device", "virtio-blk-device,id=blk0,drive=drive0,serial=disk0"}},
		{"vhost-vsock", DeviceVhostVsock{ID: "vsock0", GuestCID: 3, Transport: MMIO},
			[]string{"-device", "vhost-vsock-device,id=vsock0,guest-cid=3"}},
		{"virtio-rng", DeviceVirtioRNG{ID: "rng0", Transport: PCI}, []string{"-device", "virtio-rng-pci,id=rng0"}},
		{"root port", PCIeRootPort{ID: "rp0", Chassis: 1}, []string{"-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fds FDs
			got, err := tt.opt.Args(&fds)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
			if len(fds.Files()) != 0 {
				t.Fatalf("option passed %d files", len(fds.Files()))
			}
		})
	}
}

func TestOptionsRejectBadFieldsWithTheirName(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
		want string
	}{
		{"unknown machine", Machine{Type: "isapc"}, `machine: type "isapc"`},
		{"bad backend id", Machine{Type: Q35, MemoryBackend: "0mem"}, `memory backend: id "0mem"`},
		{"unknown accel", Accelerator{Kind: "hvf"}, `accel: kind "hvf"`},
		{"cpu model with options", CPU{Model: "max,la57=off"}, "cpu: model"},
		{"cpu empty feature", CPU{Model: "max", Off: []string{""}}, "cpu: feature"},
		{"zero cpus", SMP{}, "smp: cpus must be ≥ 1 (got 0)"},
		{"maxcpus below cpus", SMP{CPUs: 2, MaxCPUs: 1}, "maxcpus 1 is below cpus 2"},
		{"zero memory", Memory{}, "memory: size"},
		{"slots without maxmem", Memory{SizeMiB: 512, Slots: 1}, "maxmem above 512 MiB"},
		{"backend without path", MemoryBackendFile{ID: "m", SizeMiB: 1}, "memory-backend-file m: path is empty"},
		{"kernel without path", Kernel{}, "kernel: path is empty"},
		{"kernel param with space", Kernel{Path: "/k", Params: []string{"a b"}}, `kernel: param "a b"`},
		{"empty name", Name{}, "name: guest name is empty"},
		{"serial bad id", SerialFile{ID: "con sole", Path: "/l"}, `serial: id "con sole"`},
		{"qmp without path", QMPSocket{}, "qmp: path is empty"},
		{"chardev without path", ChardevSocket{ID: "c"}, "chardev c: path is empty"},
		{"no transport", DeviceVirtioSerial{ID: "v"}, `virtio-serial: transport ""`},
		{"port without serial", DeviceVirtSerialPort{ID: "p", Chardev: "c", Name: "n"}, `virtserialport p serial: id ""`},
		{"port without name", DeviceVirtSerialPort{ID: "p", Serial: "v", Chardev: "c"}, "virtserialport p: name is empty"},
		{"netdev without taps", Netdev{ID: "nd0"}, "netdev nd0: no tap file"},
		{"net without netdev", DeviceVirtioNet{ID: "n", Transport: MMIO}, `virtio-net-device n netdev: id ""`},
		{"net short mac", DeviceVirtioNet{ID: "n", Netdev: "nd", MAC: net.HardwareAddr{1}, Transport: MMIO}, "is not 6 bytes"},
		{"fsdev without path", FSDev{ID: "f"}, "fsdev f: path is empty"},
		{"9p long tag", DeviceVirtio9P{ID: "p", FSDev: "f", MountTag: strings.Repeat("x", 32), Transport: MMIO}, "1-31 bytes"},
		{"vhost-user-fs without tag", DeviceVhostUserFS{ID: "v", Chardev: "c", Transport: PCI}, "tag"},
		{"blockdev without path", Blockdev{NodeName: "d"}, "blockdev d: path is empty"},
		{"blk long serial", DeviceVirtioBlk{ID: "b", Drive: "d", Serial: strings.Repeat("s", 21), Transport: MMIO}, "longer than 20 bytes"},
		{"vsock reserved cid", DeviceVhostVsock{ID: "v", GuestCID: 2, Transport: MMIO}, "guest cid must be ≥ 3 (got 2)"},
		{"rng bad transport", DeviceVirtioRNG{ID: "r", Transport: "ccw"}, `virtio-rng: transport "ccw"`},
		{"root port no chassis", PCIeRootPort{ID: "rp0"}, "chassis must be 1-255 (got 0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.opt.Args(&FDs{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func openNull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestBuildNumbersFilesInExtraFilesOrder(t *testing.T) {
	tap0, tap1, vh0, vh1, tap2 := openNull(t), openNull(t), openNull(t), openNull(t), openNull(t)
	c := New(
		Machine{Type: Microvm},
		Netdev{ID: "nd0", TapFiles: []*os.File{tap0, tap1}, VhostFiles: []*os.File{vh0, vh1}},
		DeviceVirtioNet{ID: "net0", Netdev: "nd0", Queues: 2, Transport: MMIO},
	)
	c.Add(Netdev{ID: "nd1", TapFiles: []*os.File{tap2}})
	args, files, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"-machine", "microvm,x-option-roms=off,isa-serial=on,rtc=on",
		"-netdev", "tap,id=nd0,fds=3:4,vhost=on,vhostfds=5:6",
		"-device", "virtio-net-device,id=net0,netdev=nd0,mq=on",
		"-netdev", "tap,id=nd1,fd=7",
	}
	if !slices.Equal(args, want) {
		t.Fatalf("got  %q\nwant %q", args, want)
	}
	if !slices.Equal(files, []*os.File{tap0, tap1, vh0, vh1, tap2}) {
		t.Fatalf("files out of order: %v", files)
	}
}

func TestBuildFailsOnTheFirstBadOption(t *testing.T) {
	_, _, err := New(Machine{Type: Microvm}, SMP{CPUs: 0}).Build()
	if err == nil || !strings.Contains(err.Error(), "smp: cpus") {
		t.Fatalf("error %v, want the smp error", err)
	}
}

func TestCloseClosesTheFilesNetdevsOwn(t *testing.T) {
	tap, vhost := openNull(t), openNull(t)
	c := New(Machine{Type: Microvm}, Netdev{ID: "nd0", TapFiles: []*os.File{tap}, VhostFiles: []*os.File{vhost}})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{tap, vhost} {
		if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("file still open after Close (stat: %v)", err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
