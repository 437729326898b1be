package image

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildRefusesBadOptions(t *testing.T) {
	agent := fakeAgent(t)
	dir := t.TempDir()
	textFile := filepath.Join(dir, "agent.sh")
	os.WriteFile(textFile, []byte("#!/bin/sh\n"), 0o755)
	foreign := filepath.Join(dir, "holds-other-files")
	os.MkdirAll(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o644)
	out := filepath.Join(dir, "image")

	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"two kernels", Options{KernelPackage: "k.deb", KernelVersion: "6.1.0-56-amd64", Agent: agent, Out: out}, "--kernel-package and --kernel-version"},
		{"no agent", Options{KernelPackage: "k.deb", Out: out}, "--agent is required"},
		{"agent missing", Options{KernelPackage: "k.deb", Agent: filepath.Join(dir, "nothere"), Out: out}, "make build"},
		{"agent not ELF", Options{KernelPackage: "k.deb", Agent: textFile, Out: out}, "--agent " + textFile + " is not an ELF"},
		{"agent dynamic", Options{KernelPackage: "k.deb", Agent: "/bin/sh", Out: out}, "--agent /bin/sh is dynamically linked"},
		{"busybox missing", Options{KernelPackage: "k.deb", Agent: agent, Out: out, DebugConsole: true, Busybox: filepath.Join(dir, "nothere")}, "apt-get install busybox-static"},
		{"out holds other files", Options{KernelPackage: "k.deb", Agent: agent, Out: foreign}, "holds notes.txt, which is not part of a guest image"},
		{"kernel package missing", Options{KernelPackage: filepath.Join(dir, "k.deb"), Agent: agent, Out: out}, "--kernel-package"},
		{"installed kernel missing", Options{KernelVersion: "1.2.3-none", Root: dir, Agent: agent, Out: out}, "--kernel-version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build error %v, want one containing %q", err, tt.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a refused build created %s", out)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(foreign, "notes.txt")); string(b) != "mine" {
		t.Error("the refused build touched the other files of --out")
	}
}

func TestInputsDigestCoversEveryInput(t *testing.T) {
	base := inputs{kernel: "package aaa", agentSHA256: "bbb"}
	variants := map[string]inputs{
		"kernel":        {kernel: "package aab", agentSHA256: "bbb"},
		"agent":         {kernel: "package aaa", agentSHA256: "bbc"},
		"debug console": {kernel: "package aaa", agentSHA256: "bbb", debugConsole: true, busybox: "ccc"},
	}
	seen := map[string]string{base.digest(): "base"}
	for name, in := range variants {
		d := in.digest()
		if other, dup := seen[d]; dup {
			t.Errorf("changing the %s gives the digest of %s", name, other)
		}
		seen[d] = name
	}
	withBusybox := variants["debug console"]
	withBusybox.busybox = "ccd"
	if withBusybox.digest() == variants["debug console"].digest() {
		t.Error("another busybox gives the same digest")
	}
	if base.digest() != (inputs{kernel: "package aaa", agentSHA256: "bbb"}).digest() {
		t.Error("the digest is not a function of the inputs")
	}
}
