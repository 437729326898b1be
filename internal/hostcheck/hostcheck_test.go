package hostcheck

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// row is what a test expects of one check: status, value, and text the
// detail and fix must contain.
type row struct {
	status Status
	value  string
	detail string
	fix    string
}

func TestProbeReportsWhatAFakeHostOffers(t *testing.T) {
	builtinOnHardware := row{status: OK, value: "kvm"}
	builtinOnPVM := row{status: Unavailable, detail: "needs hardware KVM", fix: "kvm_intel or kvm_amd"}
	if !builtinVMMCompiled {
		builtinOnHardware = row{status: Unavailable, detail: "no_builtin_vmm", fix: "rebuild"}
		builtinOnPVM = builtinOnHardware
	}
	tests := []struct {
		name      string
		host      func(t *testing.T) *fakeHost
		wantOK    bool
		wantAccel string
		rows      map[string]row
	}{{
		name:      "PVM host runs QEMU with TCG",
		host:      usableHost,
		wantOK:    true,
		wantAccel: "tcg",
		rows: map[string]row{
			"kvm":         {status: Unavailable, value: "pvm", detail: "kvm_pvm", fix: "kvm_intel or kvm_amd"},
			"qemu":        {status: OK, value: "8.2.2", detail: qemuBinary},
			"tcg":         {status: OK, value: "tcg"},
			"accelerator": {status: Warning, value: "tcg", detail: "cannot boot a stock kernel"},
			"builtin-vmm": builtinOnPVM,
			"tun":         {status: OK, value: "/dev/net/tun"},
			"cgroup-v2":   {status: Unavailable, value: "hybrid"},
			"image":       {status: OK, value: "6.1.0-56-amd64", detail: "3 files match"},
		},
	}, {
		name: "hardware host runs QEMU with KVM",
		host: func(t *testing.T) *fakeHost {
			f := usableHost(t)
			os.RemoveAll(filepath.Join(f.root, "sys/module/kvm_pvm"))
			f.dir("sys/module/kvm_intel")
			return f
		},
		wantOK:    true,
		wantAccel: "kvm",
		rows: map[string]row{
			"kvm":         {status: OK, value: "hardware", detail: "kvm_intel"},
			"accelerator": {status: OK, value: "kvm", detail: "kvm_intel"},
			"builtin-vmm": builtinOnHardware,
		},
	}, {
		name: "hardware host with a QEMU built without KVM falls back to TCG",
		host: func(t *testing.T) *fakeHost {
			f := usableHost(t)
			f.dir("sys/module/kvm_amd")
			os.RemoveAll(filepath.Join(f.root, "sys/module/kvm_pvm"))
			f.qemu("tcg")
			return f
		},
		wantOK:    true,
		wantAccel: "tcg",
		rows: map[string]row{
			"accelerator": {status: Warning, value: "tcg", detail: "built without KVM"},
		},
	}, {
		name: "host without KVM emulates",
		host: func(t *testing.T) *fakeHost {
			f := usableHost(t)
			os.Remove(filepath.Join(f.root, "dev/kvm"))
			return f
		},
		wantOK:    true,
		wantAccel: "tcg",
		rows: map[string]row{
			"kvm":         {status: Unavailable, value: "absent", fix: "modprobe"},
			"accelerator": {status: Warning, value: "tcg", detail: "no KVM here"},
			"builtin-vmm": {status: Unavailable},
		},
	}, {
		name: "unusable /dev/kvm is reported with what to do",
		host: func(t *testing.T) *fakeHost {
			f := usableHost(t)
			os.Remove(filepath.Join(f.root, "dev/kvm"))
			f.dir("dev/kvm") // exists, but cannot be opened for reading and writing
			return f
		},
		wantOK:    true,
		wantAccel: "tcg",
		rows: map[string]row{
			"kvm": {status: Unavailable, value: "absent", detail: "open /dev/kvm", fix: "make /dev/kvm usable"},
		},
	}, {
		name: "host without QEMU cannot run a container",
		host: func(t *testing.T) *fakeHost {
			f := usableHost(t)
			os.Remove(filepath.Join(f.bin, qemuBinary))
			return f
		},
		wantOK: false,
		rows: map[string]row{
			"qemu":        {status: Missing, detail: "not found", fix: "apt-get install qemu-system-x86"},
			"tcg":         {status: Unavailable, fix: "apt-get install qemu-system-x86"},
			"accelerator": {status: Missing, fix: "apt-get install qemu-system-x86"},
		},
	}, {
		name: "QEMU that does not run counts as missing",
		host: func(t *testing.T) *fakeHost {
			f := usableHost(t)
			f.script(filepath.Join(f.bin, qemuBinary), "echo 'error while loading shared libraries' >&2; exit 127")
			return f
		},
		wantOK: false,
		rows: map[string]row{
			"qemu":        {status: Missing, detail: "shared libraries", fix: "--reinstall"},
			"accelerator": {status: Missing},
		},
	}, {
		name: "image with a bad checksum cannot run a container",
		host: func(t *testing.T) *fakeHost {
			f := usableHost(t)
			if err := os.WriteFile(filepath.Join(f.image, "initrd.img"), []byte("cpiO"), 0o644); err != nil {
				t.Fatal(err)
			}
			return f
		},
		wantOK:    false,
		wantAccel: "tcg",
		rows: map[string]row{
			"image": {status: Missing, detail: "initrd.img: sha256", fix: "joey image build --out"},
		},
	}, {
		name: "host without an image cannot run a container",
		host: func(t *testing.T) *fakeHost {
			f := usableHost(t)
			os.RemoveAll(f.image)
			return f
		},
		wantOK:    false,
		wantAccel: "tcg",
		rows: map[string]row{
			"image": {status: Missing, detail: "no guest image", fix: "joey image build --out"},
		},
	}, {
		name: "host without /dev/net/tun cannot run a container",
		host: func(t *testing.T) *fakeHost {
			f := usableHost(t)
			os.Remove(filepath.Join(f.root, "dev/net/tun"))
			return f
		},
		wantOK:    false,
		wantAccel: "tcg",
		rows: map[string]row{
			"tun": {status: Missing, fix: "mknod /dev/net/tun c 10 200"},
		},
	}, {
		name:      "missing optional pieces are only information",
		host:      usableHost,
		wantOK:    true,
		wantAccel: "tcg",
		rows: map[string]row{
			"vhost-net":   {status: Unavailable, detail: "user-space backend", fix: "vhost_net"},
			"vhost-vsock": {status: Unavailable, detail: "virtio-serial", fix: "vhost_vsock"},
			"virtiofsd":   {status: Unavailable, detail: "virtio-9p", fix: "virtiofsd"},
			"containerd":  {status: Unavailable, detail: "not found", fix: "containerd/v2/cmd/containerd@v2"},
		},
	}, {
		name: "optional pieces present",
		host: func(t *testing.T) *fakeHost {
			f := usableHost(t)
			f.file("dev/vhost-net", "")
			f.file("dev/vhost-vsock", "")
			f.script(filepath.Join(f.root, "usr/libexec/virtiofsd"), "echo 'virtiofsd 1.10.1'")
			f.containerd("containerd github.com/containerd/containerd/v2 v2.4.2 0123abc")
			f.mountinfo(mountRoot, mountV2)
			return f
		},
		wantOK:    true,
		wantAccel: "tcg",
		rows: map[string]row{
			"vhost-net":   {status: OK, value: "/dev/vhost-net"},
			"vhost-vsock": {status: OK, value: "/dev/vhost-vsock"},
			"virtiofsd":   {status: Unavailable, value: "/usr/libexec/virtiofsd", detail: "virtiofsd 1.10.1"},
			"containerd":  {status: OK, value: "2.4.2"},
			"cgroup-v2":   {status: OK, value: "unified"},
		},
	}, {
		name: "containerd 1.x cannot start the shim",
		host: func(t *testing.T) *fakeHost {
			f := usableHost(t)
			f.containerd("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3")
			return f
		},
		wantOK:    true,
		wantAccel: "tcg",
		rows: map[string]row{
			"containerd": {status: Warning, value: "1.6.20~ds1", detail: "cannot start joey's shim", fix: "@v2.4.2"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Probe(context.Background(), tt.host(t).host())
			if err != nil {
				t.Fatal(err)
			}
			if r.OK != tt.wantOK || r.Accelerator != tt.wantAccel {
				t.Errorf("OK=%v accelerator=%q, want %v %q", r.OK, r.Accelerator, tt.wantOK, tt.wantAccel)
			}
			for name, want := range tt.rows {
				requireRow(t, r, name, want)
			}
		})
	}
}

func requireRow(t *testing.T, r Report, name string, want row) {
	t.Helper()
	c, ok := r.Check(name)
	if !ok {
		t.Fatalf("no %q row", name)
	}
	if c.Status != want.status {
		t.Errorf("%s: status %q, want %q (detail: %s)", name, c.Status, want.status, c.Detail)
	}
	if want.value != "" && c.Value != want.value {
		t.Errorf("%s: value %q, want %q", name, c.Value, want.value)
	}
	if !strings.Contains(c.Detail, want.detail) {
		t.Errorf("%s: detail %q does not contain %q", name, c.Detail, want.detail)
	}
	if !strings.Contains(c.Fix, want.fix) {
		t.Errorf("%s: fix %q does not contain %q", name, c.Fix, want.fix)
	}
	if c.Status == OK && c.Fix != "" {
		t.Errorf("%s: ok but has a fix %q", name, c.Fix)
	}
	if c.Status != OK && c.Fix == "" {
		t.Errorf("%s: %s without a fix", name, c.Status)
	}
}

func TestOnlyRequiredChecksCanBeMissing(t *testing.T) {
	// A host with nothing at all: every check fails its own way.
	r, err := Probe(context.Background(), newFakeHost(t).host())
	if err != nil {
		t.Fatal(err)
	}
	required := map[string]bool{"qemu": true, "accelerator": true, "tun": true, "image": true}
	for _, c := range r.Checks {
		if c.Required != required[c.Name] {
			t.Errorf("%s: required=%v, want %v", c.Name, c.Required, required[c.Name])
		}
		if c.Status == Missing && !c.Required {
			t.Errorf("%s is optional but missing", c.Name)
		}
		if c.Required && c.Status != Missing {
			t.Errorf("%s: status %s on an empty host, want missing", c.Name, c.Status)
		}
	}
	if r.OK {
		t.Error("an empty host is OK")
	}
}

func TestCgroupHierarchyFromTheMountTable(t *testing.T) {
	tests := []struct {
		name   string
		mounts []string
		want   string
		status Status
	}{
		{"cgroup2 at /sys/fs/cgroup is unified", []string{mountRoot, mountV2}, "unified", OK},
		{"cgroup2 under a tmpfs of v1 controllers is hybrid", []string{mountRoot, mountTmpfsCg, mountV1Memory, mountUnified}, "hybrid", Unavailable},
		{"only v1 controllers", []string{mountRoot, mountTmpfsCg, mountV1Memory}, "v1", Unavailable},
		{"nothing mounted", []string{mountRoot}, "none", Unavailable},
		{"optional fields before the separator", []string{"31 23 0:28 / /sys/fs/cgroup rw shared:9 master:2 - cgroup2 cgroup2 rw"}, "unified", OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeHost(t)
			f.mountinfo(tt.mounts...)
			c := cgroupV2(f.host().withDefaults())
			if c.Value != tt.want || c.Status != tt.status {
				t.Fatalf("got %s/%s (%s), want %s/%s", c.Value, c.Status, c.Detail, tt.want, tt.status)
			}
		})
	}
}

func TestCanceledProbeFails(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Probe(ctx, usableHost(t).host()); err == nil {
		t.Fatal("Probe with a canceled context succeeded")
	}
}
