package nested

import (
	"strings"
	"testing"
)

func TestL1RunsCommandInHostRootWithKVM(t *testing.T) {
	res := Run(t, Options{Command: []string{"/bin/sh", "-c",
		"test -c /dev/kvm && grep -q svm /proc/cpuinfo && test -x /usr/bin/qemu-system-x86_64 && echo marker-$JOEY_NESTED_L1 && exit 3"}})
	t.Logf("L1 run took %v", res.Elapsed)
	if res.Exit != 3 || !strings.Contains(res.Output, "marker-1") {
		t.Fatalf("want exit 3 and marker-1 from L1:\n%v", res)
	}
	// kvm_amd on TCG's emulated SVM: nested paging is what makes L2 fast.
	if !strings.Contains(res.Console, "Nested Paging enabled") {
		t.Fatalf("L1 console does not show kvm_amd with nested paging:\n%s", res.Console)
	}
}
