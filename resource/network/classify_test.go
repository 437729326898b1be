package network

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
)

func isNotImplemented(err error) bool { return errdefs.IsNotImplemented(err) }

// fakeSysfs is a host whose sysfs is the directory root, laid out like
// /sys: class/net/<name>/device links to the parent device of a NIC.
func fakeSysfs(t *testing.T) (host, string) {
	t.Helper()
	root := t.TempDir()
	h := defaultHost
	h.vhostUserDir = ""
	h.sysfs = func(_ string, fn func(sysfs, scratch string) error) error { return fn(root, t.TempDir()) }
	return h, root
}

// addPCINIC lays out a NIC name whose parent is the PCI device addr.
func addPCINIC(t *testing.T, root, name, addr string) {
	t.Helper()
	dev := filepath.Join(root, "devices", "pci0000:00", addr)
	bus := filepath.Join(root, "bus", "pci")
	nic := filepath.Join(root, "class", "net", name)
	for _, d := range []string{dev, bus, nic} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(bus, filepath.Join(dev, "subsystem")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dev, filepath.Join(nic, "device")); err != nil {
		t.Fatal(err)
	}
}

func attrs(name string) netlink.LinkAttrs {
	a := netlink.NewLinkAttrs()
	a.Name = name
	return a
}

func TestClassifyDecidesHowEachInterfaceReachesTheVM(t *testing.T) {
	tests := []struct {
		name    string
		link    netlink.Link
		model   Model
		want    Kind
		wantErr string // a not-implemented error containing this
	}{
		{"veth", &netlink.Veth{LinkAttrs: attrs("eth0")}, ModelTCFilter, KindVeth, ""},
		{"veth under macvtap", &netlink.Veth{LinkAttrs: attrs("eth0")}, ModelMacvtap, KindVeth, ""},
		{"macvlan", &netlink.Macvlan{LinkAttrs: attrs("eth0")}, ModelTCFilter, KindMacvlan, ""},
		{"ipvlan", &netlink.IPVlan{LinkAttrs: attrs("eth0"), Mode: netlink.IPVLAN_MODE_L2}, ModelTCFilter, KindIPVlan, ""},
		{"existing TAP", &netlink.Tuntap{LinkAttrs: attrs("vmtap0"), Mode: netlink.TUNTAP_MODE_TAP}, ModelMacvtap, KindTap, ""},
		{"macvlan under macvtap", &netlink.Macvlan{LinkAttrs: attrs("eth0")}, ModelMacvtap, "", `interface "eth0" is a macvlan: the macvtap model only carries veth`},
		{"ipvlan under macvtap", &netlink.IPVlan{LinkAttrs: attrs("eth0")}, ModelMacvtap, "", `interface "eth0" is a ipvlan`},
		{"TUN", &netlink.Tuntap{LinkAttrs: attrs("tun0"), Mode: netlink.TUNTAP_MODE_TUN}, ModelTCFilter, "", `interface "tun0" is a TUN device`},
		{"foreign macvtap", &netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: attrs("macvtap0")}}, ModelTCFilter, "", `interface "macvtap0" is a macvtap joey did not make`},
		{"physical NIC", &netlink.Device{LinkAttrs: attrs("enp0s5")}, ModelTCFilter, "", `interface "enp0s5" is a physical device (pci 0000:00:05.0)`},
		{"virtual kind", &netlink.Vxlan{LinkAttrs: attrs("vx0")}, ModelTCFilter, "", `interface "vx0" is a vxlan link`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, root := fakeSysfs(t)
			addPCINIC(t, root, "enp0s5", "0000:00:05.0")
			got, err := h.classify("/unused", tt.link, nil, tt.model)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("classify = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if !isNotImplemented(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("classify error = %v, want not implemented containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestClassifyRefusesInterfaceServedByVhostUser(t *testing.T) {
	h, _ := fakeSysfs(t)
	h.vhostUserDir = t.TempDir()
	dir := filepath.Join(h.vhostUserDir, "vhostuser_10.77.0.2")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("10.77.0.2").To4(), Mask: net.CIDRMask(24, 32)}}
	link := &netlink.Veth{LinkAttrs: attrs("eth0")}
	// An empty directory is not a socket.
	if kind, err := h.classify("/unused", link, []netlink.Addr{addr}, ModelTCFilter); err != nil || kind != KindVeth {
		t.Fatalf("classify without socket = %q, %v; want veth", kind, err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = h.classify("/unused", link, []netlink.Addr{addr}, ModelTCFilter)
	if !isNotImplemented(err) || !strings.Contains(err.Error(), `interface "eth0" is served by the vhost-user socket`) {
		t.Fatalf("classify error = %v, want vhost-user not implemented naming eth0", err)
	}
}

func TestOptionsAreCheckedBeforeAnythingHappens(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no namespace", Options{}, "network namespace path is empty"},
		{"unknown model", Options{NetNS: "/x", Model: "bridge"}, `model "bridge" is not one of tcfilter, macvtap`},
		{"negative queues", Options{NetNS: "/x", Queues: -1}, "queues -1 out of range"},
		{"too many queues", Options{NetNS: "/x", Queues: 257}, "queues 257 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Setup(context.Background(), tt.opts)
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Setup error = %v, want invalid argument containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestOwnDeviceNamesAreRecognised(t *testing.T) {
	for name, want := range map[string]bool{
		tapName(0): true, tapName(12): true, macvtapName(3): true,
		"tap0": false, "tap_joey": false, "eth0": false, "tap0_joeyx": false, "xtap0_joey": false,
	} {
		if got := ownName.MatchString(name); got != want {
			t.Errorf("ownName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestParseDevNumber(t *testing.T) {
	got, err := parseDevNumber("246:3")
	if err != nil || got != (246<<8|3) {
		t.Errorf("parseDevNumber(246:3) = %#x, %v", got, err)
	}
	for _, bad := range []string{"", "246", "a:1", "1:b"} {
		if _, err := parseDevNumber(bad); err == nil {
			t.Errorf("parseDevNumber(%q) succeeded", bad)
		}
	}
}
