package kernel

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/joeyrt/joey/image/internal/imagetest"
	"github.com/joeyrt/joey/internal/testutil"
)

const testRelease = "9.9.9-joey"

func testModule(name string, deps string) []byte {
	return imagetest.Module("name="+name, "depends="+deps, "vermagic="+testRelease+" SMP preempt mod_unload")
}

func TestReadDebIndexesModulesAndReadsThemBack(t *testing.T) {
	bz := imagetest.BzImage(27, 0x020f, 0x10, []byte("payload"))
	mods := "lib/modules/" + testRelease + "/"
	a, b, c := testModule("a", "b,c"), testModule("b", ""), testModule("c", "")
	deb := imagetest.BuildDeb(t, map[string][]byte{
		"boot/vmlinuz-" + testRelease:         bz,
		"boot/config-" + testRelease:          []byte("CONFIG_X=y\n"),
		mods + "kernel/fs/a.ko":               a,
		mods + "kernel/lib/b.ko.gz":           imagetest.Gzip(b),
		mods + "kernel/net/c.ko":              c,
		mods + "kernel/net/unused.ko":         testModule("unused", ""),
		mods + "modules.builtin":              []byte("kernel/drivers/virtio/virtio.ko\n"),
		mods + "modules.order":                []byte("kernel/fs/a.ko\n"),
		"usr/share/doc/linux-image/changelog": []byte("x"),
	})
	ctx := context.Background()
	k, err := ReadDeb(ctx, deb)
	if err != nil {
		t.Fatal(err)
	}
	if k.Version != testRelease || !bytes.Equal(k.BzImage, bz) {
		t.Fatalf("version %q, bzImage %d bytes; want %q and the %d bytes packed", k.Version, len(k.BzImage), testRelease, len(bz))
	}
	order, err := k.Modules.Resolve([]string{"a", "virtio"})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range order {
		paths = append(paths, m.Path)
	}
	if want := []string{"kernel/net/c.ko", "kernel/lib/b.ko.gz", "kernel/fs/a.ko"}; !slices.Equal(paths, want) {
		t.Fatalf("load order %v, want %v", paths, want)
	}
	got, err := k.ReadModules(ctx, paths)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]byte{"kernel/fs/a.ko": a, "kernel/lib/b.ko.gz": b, "kernel/net/c.ko": c} {
		if !bytes.Equal(got[path], want) {
			t.Errorf("ReadModules[%s] is %d bytes, want the %d uncompressed bytes", path, len(got[path]), len(want))
		}
	}
	if _, err := k.ReadModules(ctx, []string{"kernel/fs/nothere.ko"}); err == nil || !strings.Contains(err.Error(), "not in the package") {
		t.Errorf("ReadModules of a missing file: %v", err)
	}
	if _, err := k.ReadModules(ctx, []string{"../../../etc/passwd"}); err == nil {
		t.Error("ReadModules accepted a path outside the modules directory")
	}
}

func TestReadDebRefusesBadPackages(t *testing.T) {
	mods := "lib/modules/" + testRelease + "/"
	bz := imagetest.BzImage(27, 0x020f, 0x10, []byte("payload"))
	tests := []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"no kernel image", map[string][]byte{mods + "kernel/a.ko": testModule("a", "")}, "has no boot/vmlinuz"},
		{"module of another release", map[string][]byte{
			"boot/vmlinuz-" + testRelease: bz,
			mods + "kernel/a.ko":          imagetest.Module("name=a", "vermagic=6.1.0-1-amd64 SMP"),
		}, `built for kernel "6.1.0-1-amd64"`},
		{"two releases", map[string][]byte{
			"boot/vmlinuz-" + testRelease: bz,
			"lib/modules/1.0/kernel/a.ko": testModule("a", ""),
		}, "two kernel releases"},
		{"module without modinfo", map[string][]byte{
			"boot/vmlinuz-" + testRelease: bz,
			mods + "kernel/a.ko":          imagetest.WithoutModinfo(),
		}, "no .modinfo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadDeb(context.Background(), imagetest.BuildDeb(t, tt.files))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadDeb error %v, want one containing %q", err, tt.want)
			}
		})
	}
	t.Run("not a package", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "x.deb")
		os.WriteFile(p, []byte("garbage"), 0o644)
		_, err := ReadDeb(context.Background(), p)
		if err == nil || !strings.Contains(err.Error(), "dpkg-deb") {
			t.Fatalf("ReadDeb of garbage: %v, want dpkg-deb's complaint", err)
		}
	})
}

func TestUncompressModule(t *testing.T) {
	ko := testModule("a", "")
	ctx := context.Background()
	compress := func(name string, args ...string) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			if _, err := exec.LookPath(name); err != nil {
				testutil.Unavailable(t, name+" not found")
			}
			cmd := exec.Command(name, args...)
			cmd.Stdin = bytes.NewReader(ko)
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	for ext, pack := range map[string]func(*testing.T) []byte{
		".ko":     func(*testing.T) []byte { return ko },
		".ko.gz":  func(*testing.T) []byte { return imagetest.Gzip(ko) },
		".ko.xz":  compress("xz", "--check=crc32", "-c"),
		".ko.zst": compress("zstd", "-q", "-c"),
	} {
		t.Run(ext, func(t *testing.T) {
			got, err := uncompressModule(ctx, "kernel/a"+ext, pack(t))
			if err != nil || !bytes.Equal(got, ko) {
				t.Fatalf("uncompressModule(%s) = %d bytes, %v; want the %d-byte module", ext, len(got), err, len(ko))
			}
			if p := UncompressedPath("kernel/a" + ext); p != "kernel/a.ko" {
				t.Errorf("UncompressedPath(kernel/a%s) = %q, want kernel/a.ko", ext, p)
			}
		})
	}
	if _, err := uncompressModule(ctx, "kernel/a.ko.bz2", ko); err == nil {
		t.Error("uncompressModule accepted .ko.bz2")
	}
}
