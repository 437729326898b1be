package qemu

import (
	"strings"
	"testing"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/internal/kvmdetect"
)

func TestResolveAccelPicksKVMOnlyWhereItBootsStockKernels(t *testing.T) {
	hw := kvmdetect.Result{Kind: kvmdetect.Hardware, Reason: "/dev/kvm is provided by kvm_intel"}
	pvm := kvmdetect.Result{Kind: kvmdetect.PVM, Reason: "/dev/kvm is provided by kvm_pvm"}
	absent := kvmdetect.Result{Kind: kvmdetect.Absent, Reason: "/dev/kvm: no such file"}
	tests := []struct {
		name       string
		want       hypervisor.Accel
		kvm        kvmdetect.Result
		wantKind   string
		wantReason string
		wantErr    string
	}{
		{"auto on hardware", hypervisor.AccelAuto, hw, "kvm", "kvm_intel", ""},
		{"empty means auto", "", hw, "kvm", "kvm_intel", ""},
		{"auto on pvm", hypervisor.AccelAuto, pvm, "tcg", "kvm_pvm", ""},
		{"auto without kvm", hypervisor.AccelAuto, absent, "tcg", "falling back to TCG", ""},
		{"tcg forced on hardware", hypervisor.AccelTCG, hw, "tcg", "tcg requested", ""},
		{"kvm forced on hardware", hypervisor.AccelKVM, hw, "kvm", "kvm requested", ""},
		{"kvm forced on pvm warns", hypervisor.AccelKVM, pvm, "kvm", "warning", ""},
		{"kvm forced without kvm", hypervisor.AccelKVM, absent, "", "", "no usable KVM: /dev/kvm: no such file"},
		{"unknown", "hvf", hw, "", "", `accel "hvf"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveAccel(tt.want, tt.kvm)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.kind != tt.wantKind || !strings.Contains(got.reason, tt.wantReason) {
				t.Fatalf("got %+v, want %s with a reason containing %q", got, tt.wantKind, tt.wantReason)
			}
		})
	}
}

func TestParseCPUMHzGivesTheTSCRateInKHz(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr string
	}{
		{"first cpu", "processor\t: 0\ncpu MHz\t\t: 2599.998\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.000\n", 2599998, ""},
		{"no line", "processor\t: 0\n", 0, "no cpu MHz line"},
		{"garbage", "cpu MHz\t: fast\n", 0, `bad cpu MHz "fast"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPUMHz([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestTSCRateIsToldOnlyToTCGGuests(t *testing.T) {
	if got := tscParams("tcg", 2600000); len(got) != 1 || got[0] != "tsc_early_khz=2600000" {
		t.Fatalf("tcg: %q", got)
	}
	if got := tscParams("kvm", 2600000); got != nil {
		t.Fatalf("kvm: %q", got)
	}
	if got := tscParams("tcg", 0); got != nil {
		t.Fatalf("unknown rate: %q", got)
	}
}
