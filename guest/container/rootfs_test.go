package container

import (
	"strings"
	"testing"
)

func TestRootIsInitialRootfs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mountinfo string
		want      bool
	}{
		{"initramfs", `1 1 0:2 / / rw - rootfs rootfs rw
20 1 0:19 / /proc rw,relatime - proc proc rw
`, true},
		{"after switch_root onto tmpfs", `1 1 0:2 / / rw - rootfs rootfs rw
25 1 0:22 / / rw,relatime - tmpfs tmpfs rw
`, false},
		{"disk root", `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rootIsInitialRootfs(strings.NewReader(tc.mountinfo))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := rootIsInitialRootfs(strings.NewReader("")); err == nil {
		t.Fatal("a table without / gave no error")
	}
}

func TestRootIsRamfsIsFalseOnThisHost(t *testing.T) {
	// Tests run from a disk (or overlay) root, never from an initramfs.
	if RootIsRamfs() {
		t.Fatal("RootIsRamfs() = true on the test host")
	}
}
