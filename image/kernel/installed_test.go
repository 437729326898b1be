package kernel

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/joeyrt/joey/image/internal/imagetest"
)

func TestReadInstalledUsesDepmodFiles(t *testing.T) {
	root := t.TempDir()
	mods := "lib/modules/" + testRelease + "/"
	a, b := testModule("a", "b"), testModule("b", "")
	imagetest.WriteTree(t, root, map[string][]byte{
		"boot/vmlinuz-" + testRelease: []byte("bzimage"),
		mods + "kernel/a.ko":          a,
		mods + "kernel/b.ko.gz":       imagetest.Gzip(b),
		mods + "modules.dep":          []byte("kernel/a.ko: kernel/b.ko.gz\nkernel/b.ko.gz:\n"),
		mods + "modules.softdep":      []byte("softdep a pre: crc\n"),
		mods + "modules.alias":        []byte("alias crc b\n"),
		mods + "modules.builtin":      []byte("kernel/virtio.ko\n"),
	})
	ctx := context.Background()
	k, err := ReadInstalled(ctx, root, testRelease)
	if err != nil {
		t.Fatal(err)
	}
	if string(k.BzImage) != "bzimage" || k.Version != testRelease {
		t.Fatalf("ReadInstalled = %q, %q", k.Version, k.BzImage)
	}
	order, err := k.Modules.Resolve([]string{"a", "virtio"})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range order {
		paths = append(paths, m.Path)
	}
	if want := []string{"kernel/b.ko.gz", "kernel/a.ko"}; !slices.Equal(paths, want) {
		t.Fatalf("load order %v, want %v", paths, want)
	}
	got, err := k.ReadModules(ctx, paths)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got["kernel/a.ko"], a) || !bytes.Equal(got["kernel/b.ko.gz"], b) {
		t.Error("ReadModules did not return the uncompressed modules")
	}
}

func TestReadInstalledErrors(t *testing.T) {
	root := t.TempDir()
	imagetest.WriteTree(t, root, map[string][]byte{"boot/vmlinuz-" + testRelease: []byte("bzimage")})
	tests := []struct{ version, want string }{
		{testRelease, "run `depmod " + testRelease + "`"},
		{"1.2.3-none", "ls /boot"},
		{"../../etc", "not a kernel release name"},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			_, err := ReadInstalled(context.Background(), root, tt.version)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadInstalled(%q) error %v, want one containing %q", tt.version, err, tt.want)
			}
		})
	}
}
