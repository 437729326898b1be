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
	if !strings.Contains(res.Console, "Nested Paging enabled") && !strings.Contains(res.Console, "NESTED-VERDICT") {
		t.Fatalf("console:\n%s", res.Console)
	}
}
