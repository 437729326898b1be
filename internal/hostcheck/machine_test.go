package hostcheck

import (
	"context"
	"os"
	"testing"

	"github.com/joeyrt/joey/internal/testutil"
)

// TestProbeOnThisMachine runs the real probe and checks the facts of the
// machines joey is developed on (RECIPES.md): PVM behind /dev/kvm, QEMU
// with TCG, no vhost devices, Debian 12's QEMU 7.2 virtiofsd, a hybrid
// cgroup mount. It needs no root.
func TestProbeOnThisMachine(t *testing.T) {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err != nil {
		t.Skip("not a PVM host: the facts checked here are those of the development machines")
	}
	testutil.RequireQEMU(t)
	// An empty image directory, so the verdict does not depend on whether
	// an image was installed.
	r, err := Probe(context.Background(), Host{ImageDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	kvm := row{status: Unavailable, value: "pvm", detail: "kvm_pvm"}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		// Not root and not in /dev/kvm's group: no KVM for this user.
		kvm = row{status: Unavailable, value: "absent", detail: "permission denied", fix: "join its group"}
	} else {
		f.Close()
	}
	for name, want := range map[string]row{
		"kvm":         kvm,
		"tcg":         {status: OK, value: "tcg"},
		"accelerator": {status: Warning, value: "tcg"},
		"builtin-vmm": {status: Unavailable},
		"vhost-net":   {status: Unavailable},
		"vhost-vsock": {status: Unavailable, detail: "no such file"},
		"virtiofsd":   {status: Unavailable, detail: "does not drive virtio-fs"},
		"cgroup-v2":   {status: Unavailable, value: "hybrid"},
		"image":       {status: Missing, detail: "read manifest.json"},
	} {
		requireRow(t, r, name, want)
	}
	if c, _ := r.Check("qemu"); c.Status != OK || c.Value == "" {
		t.Errorf("qemu: %s %q, want ok with a version", c.Status, c.Detail)
	}
	if r.OK || r.Accelerator != "tcg" {
		t.Errorf("OK=%v accelerator=%q, want false (no image) and tcg", r.OK, r.Accelerator)
	}
}
