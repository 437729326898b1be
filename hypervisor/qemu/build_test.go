package qemu

import (
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/hypervisor/qemu/cmdline"
)

func baseConfig() hypervisor.Config {
	return hypervisor.Config{
		ID:        "vm1",
		VCPUs:     1,
		MemoryMiB: 256,
		Kernel:    "/k/vmlinux",
		Initrd:    "/k/initrd",
		StateDir:  "/run/joey/vm1",
	}
}

// common is the head every command line starts with, for machine m under TCG.
func common(m string, cpus, mem string) []string {
	return []string{"-machine", m, "-accel", "tcg", "-cpu", "max,la57=off", "-smp", cpus, "-m", mem}
}

func TestBuildCmdlineMapsConfigOntoQEMUArgs(t *testing.T) {
	flags := []string{"-nodefaults", "-no-user-config", "-nographic", "-no-reboot"}
	qmpArgs := []string{"-chardev", "socket,id=qmp,path=/run/joey/vm1/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control"}
	agentMMIO := []string{
		"-device", "virtio-serial-device,id=vser0",
		"-chardev", "socket,id=agent,path=/run/joey/vm1/agent.sock,server=on,wait=off",
		"-device", "virtserialport,id=agent-port,bus=vser0.0,chardev=agent,name=agent.0",
	}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	microvm := "microvm,x-option-roms=off,isa-serial=on,rtc=on"

	tests := []struct {
		name   string
		change func(c *hypervisor.Config)
		plan   plan
		want   []string
	}{
		{
			name: "minimal microvm with serial agent and console log",
			change: func(c *hypervisor.Config) {
				c.ConsoleLog = "/var/log/vm1.log"
				c.KernelParams = []string{"quiet", "rdinit=/init"}
			},
			plan: plan{machine: cmdline.Microvm, accel: "tcg", stateDir: "/run/joey/vm1", tscKHz: 2599998},
			want: cat(common(microvm, "1", "256M"), flags,
				[]string{"-name", "joey-vm1", "-kernel", "/k/vmlinux", "-initrd", "/k/initrd",
					"-append", "console=ttyS0 panic=-1 reboot=t tsc_early_khz=2599998 joey.channel=serial:agent.0 quiet rdinit=/init",
					"-chardev", "file,id=console,path=/var/log/vm1.log", "-serial", "chardev:console"},
				qmpArgs, agentMMIO),
		},
		{
			name: "microvm with every boot device",
			change: func(c *hypervisor.Config) {
				c.VCPUs, c.MaxVCPUs = 2, 4
				c.SharedMemory = true
				c.DebugConsole = true
				c.RNG = true
				c.SharedFS = []hypervisor.SharedFS{
					{Tag: "share", Kind: hypervisor.SharedFS9P, HostPath: "/srv/share", ReadOnly: true},
					{Tag: "rootfs", Kind: hypervisor.SharedFSVirtioFS, Socket: "/run/virtiofsd.sock"},
				}
				c.Block = []hypervisor.BlockDevice{{ID: "disk0", Path: "/img/disk0", ReadOnly: true}}
			},
			plan: plan{machine: cmdline.Microvm, accel: "tcg", stateDir: "/run/joey/vm1", paused: true},
			want: cat(common(microvm+",memory-backend=mem0", "2,maxcpus=4", "256M"),
				[]string{"-object", "memory-backend-file,id=mem0,size=256M,mem-path=/dev/shm,share=on"},
				flags, []string{"-S"},
				[]string{"-name", "joey-vm1", "-kernel", "/k/vmlinux", "-initrd", "/k/initrd",
					"-append", "panic=-1 reboot=t joey.channel=serial:agent.0 joey.debug_console=console.1"},
				qmpArgs, agentMMIO,
				[]string{
					"-chardev", "socket,id=dbgcon,path=/run/joey/vm1/console.sock,server=on,wait=off",
					"-device", "virtserialport,id=dbgcon-port,bus=vser0.0,chardev=dbgcon,name=console.1",
					"-fsdev", "local,id=fs0,path=/srv/share,security_model=none,multidevs=remap,readonly=on",
					"-device", "virtio-9p-device,id=fs0-9p,fsdev=fs0,mount_tag=share",
					"-chardev", "socket,id=vfs1-chr,path=/run/virtiofsd.sock",
					"-device", "vhost-user-fs-device,id=vfs1,chardev=vfs1-chr,tag=rootfs,queue-size=1024",
					"-blockdev", "driver=raw,node-name=drive-disk0,read-only=on,file.driver=file,file.filename=/img/disk0",
					"-device", "virtio-blk-device,id=blk-disk0,drive=drive-disk0,serial=disk0",
					"-device", "virtio-rng-device,id=rng0",
				}),
		},
		{
			name: "q35 under kvm with hotplug slots and a vsock agent",
			change: func(c *hypervisor.Config) {
				c.HotplugSlots = 2
				c.AgentChannel = hypervisor.AgentChannel{Kind: hypervisor.ChannelVsock, GuestCID: 3, Port: 1024}
			},
			plan: plan{machine: cmdline.Q35, accel: "kvm", stateDir: "/run/joey/vm1", tscKHz: 2599998},
			want: cat([]string{"-machine", "q35", "-accel", "kvm", "-cpu", "host", "-smp", "1", "-m", "256M"}, flags,
				[]string{"-name", "joey-vm1", "-kernel", "/k/vmlinux", "-initrd", "/k/initrd",
					"-append", "panic=-1 reboot=t joey.channel=vsock:1024"},
				qmpArgs,
				[]string{
					"-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1",
					"-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=2",
					"-device", "vhost-vsock-pci,id=vsock0,guest-cid=3",
				}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			tt.change(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			args, files, err := buildCmdline(&cfg, tt.plan).Build()
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != 0 {
				t.Fatalf("%d files passed", len(files))
			}
			if !slices.Equal(args, tt.want) {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(args, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestBuildCmdlinePassesTapFilesAndClosesThemWithTheCmdline(t *testing.T) {
	open := func() *os.File {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	t0, t1, v0, v1 := open(), open(), open(), open()
	cfg := baseConfig()
	cfg.Net = []hypervisor.NetDevice{{ID: "eth0", TapFiles: []*os.File{t0, t1}, VhostFiles: []*os.File{v0, v1},
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}, MTU: 1450}}
	cl := buildCmdline(&cfg, plan{machine: cmdline.Q35, accel: "tcg", stateDir: "/run/joey/vm1"})
	args, files, err := cl.Build()
	if err != nil {
		t.Fatal(err)
	}
	tailWant := []string{
		"-netdev", "tap,id=netdev-eth0,fds=3:4,vhost=on,vhostfds=5:6",
		"-device", "virtio-net-pci,id=net-eth0,netdev=netdev-eth0,mac=02:00:00:00:00:09,host_mtu=1450,mq=on,vectors=6,romfile=",
	}
	if got := args[len(args)-4:]; !slices.Equal(got, tailWant) {
		t.Fatalf("got %q, want %q", got, tailWant)
	}
	if !slices.Equal(files, []*os.File{t0, t1, v0, v1}) {
		t.Fatalf("files %v", files)
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := t0.Stat(); err == nil {
		t.Fatal("tap file still open after the command line was closed")
	}
}

func TestMachineForPicksQ35ForHotplugAndRejectsMicrovmHotplug(t *testing.T) {
	d, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		machine string
		slots   int
		want    cmdline.MachineType
		wantErr string
	}{
		{"default", "", 0, cmdline.Microvm, ""},
		{"hotplug", "", 1, cmdline.Q35, ""},
		{"hint", "pc", 0, cmdline.PC, ""},
		{"microvm hotplug", "microvm", 1, "", "hotplug slots need machine q35 (got microvm)"},
		{"unknown", "virt", 0, "", `machine "virt" is not one of microvm, q35, pc`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.machineFor(&hypervisor.Config{Machine: tt.machine, HotplugSlots: tt.slots})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := New(Options{Machine: "isapc"}); err == nil || !strings.Contains(err.Error(), `qemu options: machine "isapc"`) {
		t.Fatalf("bad machine: %v", err)
	}
	if _, err := New(Options{Grace: -1}); err == nil || !strings.Contains(err.Error(), "grace") {
		t.Fatalf("negative grace: %v", err)
	}
}

func TestTailKeepsTheLastLines(t *testing.T) {
	tl := &tail{max: 3}
	for _, w := range []string{"one\ntwo\n", "thr", "ee\nfour\nfive\nsi", "x"} {
		if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if got, want := tl.String(), "three\nfour\nfive\nsix"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	long := &tail{max: 1}
	long.Write([]byte(strings.Repeat("x", 3*maxLine)))
	if n := len(long.String()); n != maxLine {
		t.Fatalf("unterminated line kept %d bytes, want %d", n, maxLine)
	}
}
