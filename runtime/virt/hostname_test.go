package virt

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/runtime"
)

func TestGuestHostnameNeverFallsBackToTheHostsName(t *testing.T) {
	long := strings.Repeat("a", 64)
	for _, tc := range []struct {
		id, hostname, want string
	}{
		{"sb1", "pod", "pod"},
		{"sb1", "", "sb1"},
		{long, "", long[:63]},
	} {
		got := guestHostname(runtime.SandboxConfig{ID: tc.id, Spec: &specs.Spec{Hostname: tc.hostname}})
		if got != tc.want {
			t.Errorf("guestHostname(%q, %q) = %q, want %q", tc.id, tc.hostname, got, tc.want)
		}
	}
}
