package kmod

import (
	"slices"
	"strings"
	"testing"

	"github.com/joeyrt/joey/image/internal/imagetest"
)

// The files depmod writes for an installed kernel, in their real formats.
const (
	depFile = `kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko kernel/net/9p/9pnet.ko
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet.ko:
kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
`
	softdepFile = `# Soft dependencies extracted from modules themselves.

softdep ext4 pre: crypto-crc32c
softdep 9pnet post: 9pnet_virtio
`
	aliasFile = `# Aliases extracted from modules themselves.
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias crypto-crc32c crc32c_intel
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
`
	builtinFile = "kernel/drivers/virtio/virtio.ko\nkernel/fs/mbcache.ko\n"
)

func TestReadDepmodFilesThenResolve(t *testing.T) {
	x := NewIndex()
	for _, step := range []struct {
		read func(*Index) error
	}{
		{func(x *Index) error { return x.ReadDep(strings.NewReader(depFile)) }},
		{func(x *Index) error { return x.ReadSoftdep(strings.NewReader(softdepFile)) }},
		{func(x *Index) error { return x.ReadAlias(strings.NewReader(aliasFile)) }},
		{func(x *Index) error { return x.ReadBuiltin(strings.NewReader(builtinFile)) }},
	} {
		if err := step.read(x); err != nil {
			t.Fatal(err)
		}
	}
	got, err := x.Resolve([]string{"9p", "ext4", "crc32c_generic"})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range got {
		paths = append(paths, m.Path)
	}
	// fscache after netfs; crc32c_generic answers ext4's softdep before
	// ext4's own dependencies; mbcache is built in (the modules.dep line
	// still lists it, as it would on a kernel rebuilt with it built in).
	want := []string{
		"kernel/net/9p/9pnet.ko",
		"kernel/fs/netfs/netfs.ko",
		"kernel/fs/fscache/fscache.ko",
		"kernel/fs/9p/9p.ko",
		"kernel/crypto/crc32c_generic.ko",
		"kernel/fs/jbd2/jbd2.ko",
		"kernel/lib/crc16.ko",
		"kernel/fs/ext4/ext4.ko.xz",
	}
	if !slices.Equal(paths, want) {
		t.Errorf("load order\n%s\nwant\n%s", strings.Join(paths, "\n"), strings.Join(want, "\n"))
	}
}

func TestReadRejectsMalformedLines(t *testing.T) {
	tests := []struct {
		name string
		read func(*Index) error
		want string
	}{
		{"dep without colon", func(x *Index) error {
			return x.ReadDep(strings.NewReader("kernel/a.ko:\nkernel/b.ko kernel/a.ko\n"))
		}, "modules.dep line 2"},
		{"softdep without module", func(x *Index) error { return x.ReadSoftdep(strings.NewReader("softdep\n")) }, "modules.softdep line 1"},
		{"alias with two words", func(x *Index) error { return x.ReadAlias(strings.NewReader("alias x\n")) }, "modules.alias line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.read(NewIndex()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestReadBuiltinModinfoAliases(t *testing.T) {
	x := NewIndex()
	data := "crc32c_generic.alias=crypto-crc32c\x00crc32c_generic.license=GPL\x00printk.time=1\x00"
	if err := x.ReadBuiltinModinfo(strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := x.Add(Module{Name: "ext4", Path: "kernel/ext4.ko", SoftPre: []string{"crypto-crc32c"}}); err != nil {
		t.Fatal(err)
	}
	got, err := x.Resolve([]string{"ext4"})
	if err != nil || names(got) != "ext4" {
		t.Fatalf("Resolve = %q, %v; want only ext4, its softdep being built in", names(got), err)
	}
}

func TestParseModinfo(t *testing.T) {
	ko := imagetest.Module("softdep=pre: crypto-crc32c post: foo", "alias=ext3", "alias=ext2",
		"depends=jbd2,mbcache,crc16", "", "", "intree=Y", "name=ext4", "vermagic=6.1.0-56-amd64 SMP preempt")
	info, err := ParseModinfo(ko)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "ext4" || !slices.Equal(info.Depends, []string{"jbd2", "mbcache", "crc16"}) ||
		!slices.Equal(info.SoftPre, []string{"crypto-crc32c"}) || !slices.Equal(info.Aliases, []string{"ext3", "ext2"}) ||
		!strings.HasPrefix(info.Vermagic, "6.1.0-56-amd64 ") {
		t.Errorf("ParseModinfo = %+v", info)
	}

	x := NewIndex()
	if err := x.AddModinfo("kernel/fs/ext4/ext4.ko", info); err != nil {
		t.Fatal(err)
	}
	m, ok := x.Lookup("ext4")
	if !ok || m.Path != "kernel/fs/ext4/ext4.ko" {
		t.Errorf("Lookup(ext4) = %+v, %v", m, ok)
	}
}

func TestParseModinfoRejectsNonModules(t *testing.T) {
	if _, err := ParseModinfo([]byte("not an elf")); err == nil {
		t.Error("ParseModinfo accepted a non-ELF file")
	}
	if _, err := ParseModinfo(imagetest.WithoutModinfo()); err == nil || !strings.Contains(err.Error(), "no .modinfo") {
		t.Errorf("ParseModinfo of an ELF without .modinfo: %v", err)
	}
}
