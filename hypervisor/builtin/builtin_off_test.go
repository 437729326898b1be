//go:build no_builtin_vmm

package builtin

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/internal/kvmdetect"
)

// TestTaggedBuildRefusesToStartNamingTheTag runs from TestBuildWithoutVMM.
func TestTaggedBuildRefusesToStartNamingTheTag(t *testing.T) {
	d := New(Options{Detect: fakeKVM(kvmdetect.Hardware)})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg := validConfig(t)
	cfg.Net = []hypervisor.NetDevice{{ID: "eth0", TapFiles: []*os.File{w}, MAC: []byte{2, 0, 0, 0, 0, 1}}}
	_, err = d.Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "no_builtin_vmm") || !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Fatalf("Start = %v, want ErrNotImplemented naming no_builtin_vmm", err)
	}
	if _, err := d.Capabilities(context.Background()); err == nil || !strings.Contains(err.Error(), "no_builtin_vmm") {
		t.Fatalf("Capabilities = %v, want an error naming no_builtin_vmm", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("TAP file still open (write: %v)", err)
	}
}
