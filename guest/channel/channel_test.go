package channel

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakePorts(t *testing.T, names map[string]string) string {
	t.Helper()
	sys := t.TempDir()
	for dev, name := range names {
		d := filepath.Join(sys, dev)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "name"), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sys
}

func TestFindPortPicksThePortByNameNotByNumber(t *testing.T) {
	sys := fakePorts(t, map[string]string{"vport0p0": "", "vport1p1": "console.1", "vport1p2": "agent.0"})
	got, err := FindPort(sys, "/dev", "agent.0")
	if err != nil {
		t.Fatal(err)
	}
	if got != "/dev/vport1p2" {
		t.Fatalf("FindPort = %s, want /dev/vport1p2", got)
	}
}

func TestFindPortNamesTheAvailablePortsWhenMissing(t *testing.T) {
	sys := fakePorts(t, map[string]string{"vport1p1": "console.1"})
	_, err := FindPort(sys, "/dev", "agent.0")
	if err == nil || !strings.Contains(err.Error(), "console.1") {
		t.Fatalf("error = %v, want one listing console.1", err)
	}
}

func TestListenRejectsBadSpecs(t *testing.T) {
	for _, spec := range []string{"", "serial", "serial:", "vsock:abc", "tcp:1234"} {
		if _, err := Listen(context.Background(), spec); err == nil {
			t.Errorf("Listen(%q) succeeded, want an error", spec)
		}
	}
}
