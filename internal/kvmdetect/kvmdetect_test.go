package kvmdetect

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDetectAtTellsKindsApart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kvmDev  bool
		modules []string
		want    Kind
	}{
		{"no device", false, []string{"kvm_intel"}, Absent},
		{"pvm wins over kvm", true, []string{"kvm", "kvm_pvm"}, PVM},
		{"intel", true, []string{"kvm", "kvm_intel"}, Hardware},
		{"amd", true, []string{"kvm", "kvm_amd"}, Hardware},
		{"device without vendor module", true, []string{"kvm"}, Absent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			os.MkdirAll(filepath.Join(root, "dev"), 0o755)
			if tc.kvmDev {
				if err := os.WriteFile(filepath.Join(root, "dev/kvm"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for _, m := range tc.modules {
				os.MkdirAll(filepath.Join(root, "sys/module", m), 0o755)
			}
			got := DetectAt(root)
			if got.Kind != tc.want {
				t.Fatalf("DetectAt = %v (%s), want %v", got.Kind, got.Reason, tc.want)
			}
			if got.Reason == "" {
				t.Fatal("no reason given")
			}
			if got.BootsStockKernel() != (tc.want == Hardware) {
				t.Fatalf("BootsStockKernel = %v for %v", got.BootsStockKernel(), tc.want)
			}
		})
	}
}
