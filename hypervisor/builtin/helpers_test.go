package builtin

import (
	"path/filepath"
	"testing"

	"github.com/joeyrt/joey/hypervisor"
	"github.com/joeyrt/joey/internal/kvmdetect"
)

func fakeKVM(kind kvmdetect.Kind) func() kvmdetect.Result {
	return func() kvmdetect.Result { return kvmdetect.Result{Kind: kind, Reason: "fake " + string(kind)} }
}

func validConfig(t *testing.T) *hypervisor.Config {
	return &hypervisor.Config{
		ID: "vm1", VCPUs: 1, MemoryMiB: 128, Kernel: "/nonexistent/vmlinux",
		StateDir:     filepath.Join(t.TempDir(), "vm"),
		AgentChannel: hypervisor.AgentChannel{Kind: hypervisor.ChannelSerial},
	}
}
