package tap

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"unsafe"

	"github.com/joeyrt/joey/internal/netnsexec"
	"golang.org/x/sys/unix"
)

func TestInspectReportsHowTheQueueWasOpened(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"single queue with vnet header", Options{Name: "jt-vh", Queues: 1, VnetHdr: true}},
		{"multi queue without", Options{Name: "jt-mq", Queues: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.NetNS = newNetNS(t)
			tp, err := Create(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer tp.Close()
			info, err := Inspect(tp.Files()[0])
			if err != nil {
				t.Fatal(err)
			}
			want := QueueInfo{Name: opts.Name, TAP: true, VnetHdr: opts.VnetHdr, MultiQueue: opts.Queues > 1}
			if info != want {
				t.Fatalf("Inspect = %+v, want %+v", info, want)
			}
		})
	}
}

func TestSetVnetHdrSizeIsReadBackAndBoundedByTheKernel(t *testing.T) {
	ns := newNetNS(t)
	tp, err := Create(context.Background(), Options{Name: "jt-hdr", Queues: 1, VnetHdr: true, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	f := tp.Files()[0]
	if got, err := VnetHdrSize(f); err != nil || got != 10 {
		t.Fatalf("new TAP: VnetHdrSize = %d, %v; want the kernel's default 10", got, err)
	}
	if err := SetVnetHdrSize(f, 12); err != nil {
		t.Fatal(err)
	}
	if got, err := VnetHdrSize(f); err != nil || got != 12 {
		t.Fatalf("VnetHdrSize = %d, %v; want 12", got, err)
	}
	// Shorter than struct virtio_net_hdr: the kernel says no.
	if err := SetVnetHdrSize(f, 8); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("SetVnetHdrSize(8) = %v, want EINVAL", err)
	}
}

func TestSetOffloadSwitchesTheLinksSegmentationOffload(t *testing.T) {
	ns := newNetNS(t)
	tp, err := Create(context.Background(), Options{Name: "jt-off", Queues: 1, VnetHdr: true, NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	f := tp.Files()[0]
	steps := []struct {
		name    string
		offload Offload
		tso     bool
	}{
		{"checksum and TSO", OffloadCsum | OffloadTSO4 | OffloadTSO6, true},
		{"checksum only", OffloadCsum, false},
		{"TSO again", OffloadCsum | OffloadTSO4, true},
		{"none", 0, false},
	}
	for _, s := range steps {
		if err := SetOffload(f, s.offload); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := ethtoolTSO(t, ns, "jt-off"); got != s.tso {
			t.Fatalf("%s: link TSO %v, want %v", s.name, got, s.tso)
		}
	}
	// Segmentation without checksum offload is meaningless; the kernel
	// refuses it rather than half-apply it.
	if err := SetOffload(f, OffloadTSO4); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("TSO4 without checksum: %v, want EINVAL", err)
	}
}

// ethtoolTSO reads the link's TCP segmentation offload (ETHTOOL_GTSO) from
// inside its namespace, the way ethtool -k does.
func ethtoolTSO(t *testing.T, ns, name string) bool {
	t.Helper()
	var on bool
	err := netnsexec.Run(ns, func() error {
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		// On the heap, so its address stays put while only a uintptr
		// inside ifr refers to it.
		val := &struct{ cmd, data uint32 }{cmd: unix.ETHTOOL_GTSO}
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data uintptr
			_    [16]byte
		}
		copy(ifr.name[:], name)
		ifr.data = uintptr(unsafe.Pointer(val))
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(val)
		if errno != 0 {
			return errno
		}
		on = val.data != 0
		return nil
	})
	if err != nil {
		t.Fatalf("ETHTOOL_GTSO on %s: %v", name, err)
	}
	return on
}
