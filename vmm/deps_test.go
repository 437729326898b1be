// Package vmm_test holds the rules that span the built-in VMM's packages.
package vmm_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestVMMImportsNothingOfTheRuntime enforces DESIGN.md: vmm/ is a library
// the runtime uses through hypervisor/builtin, never the other way round.
func TestVMMImportsNothingOfTheRuntime(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "list", "-deps", "./...")
	cmd.Dir = filepath.Dir(self)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	const mod = "github.com/joeyrt/joey/"
	forbidden := []string{"shim", "service", "runtime", "resource", "hypervisor", "agent", "persist", "config"}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 5 {
		t.Fatalf("go list returned too little to check: %q", out)
	}
	for _, p := range pkgs {
		rest, ok := strings.CutPrefix(p, mod)
		if !ok {
			continue
		}
		top, _, _ := strings.Cut(rest, "/")
		for _, f := range forbidden {
			if top == f {
				t.Errorf("vmm depends on %s", p)
			}
		}
	}
}
