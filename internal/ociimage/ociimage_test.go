package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/joeyrt/joey/internal/testutil"
)

const testRef = "docker.io/library/busybox:joey"

func requireBusybox(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		testutil.Unavailable(t, "busybox-static is not installed: "+err.Error())
	}
	return data
}

// tarFile is one member of a tar stream, in stream order.
type tarFile struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, data []byte) []tarFile {
	t.Helper()
	var files []tarFile
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read tar member %s: %v", hdr.Name, err)
		}
		files = append(files, tarFile{hdr: hdr, data: body})
	}
}

func byName(files []tarFile) map[string]tarFile {
	m := make(map[string]tarFile, len(files))
	for _, f := range files {
		m[f.hdr.Name] = f
	}
	return m
}

// readBlob returns the blob desc points to after checking that its bytes
// have the digest and size the descriptor claims.
func readBlob(t *testing.T, layout map[string]tarFile, desc ocispec.Descriptor) []byte {
	t.Helper()
	if err := desc.Digest.Validate(); err != nil {
		t.Fatalf("descriptor digest %q: %v", desc.Digest, err)
	}
	f, ok := layout["blobs/sha256/"+desc.Digest.Encoded()]
	if !ok {
		t.Fatalf("blob %s (%s) is missing from the layout", desc.Digest, desc.MediaType)
	}
	if got := digest.FromBytes(f.data); got != desc.Digest {
		t.Fatalf("blob %s has digest %s", desc.Digest, got)
	}
	if int64(len(f.data)) != desc.Size {
		t.Fatalf("blob %s has %d bytes, descriptor says %d", desc.Digest, len(f.data), desc.Size)
	}
	return f.data
}

func decode(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
}

func TestWriteBusyboxIsValidLayout(t *testing.T) {
	bbData := requireBusybox(t)
	var buf bytes.Buffer
	if err := WriteBusybox(context.Background(), &buf, "busybox:joey"); err != nil {
		t.Fatal(err)
	}
	layout := byName(readTar(t, buf.Bytes()))

	var ol ocispec.ImageLayout
	decode(t, layout[ocispec.ImageLayoutFile].data, &ol)
	if ol.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout version %q, want %q", ol.Version, ocispec.ImageLayoutVersion)
	}

	var index ocispec.Index
	decode(t, layout[ocispec.ImageIndexFile].data, &index)
	if index.SchemaVersion != 2 || len(index.Manifests) != 1 {
		t.Fatalf("index: schema %d with %d manifests, want 2 with 1", index.SchemaVersion, len(index.Manifests))
	}
	mdesc := index.Manifests[0]
	for _, key := range []string{AnnotationImageName, ocispec.AnnotationRefName} {
		if got := mdesc.Annotations[key]; got != testRef {
			t.Errorf("index annotation %s = %q, want %q", key, got, testRef)
		}
	}
	if mdesc.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest media type %q", mdesc.MediaType)
	}

	var manifest ocispec.Manifest
	decode(t, readBlob(t, layout, mdesc), &manifest)
	if manifest.Config.MediaType != ocispec.MediaTypeImageConfig || len(manifest.Layers) != 1 {
		t.Fatalf("manifest: config %q, %d layers; want an image config and 1 layer", manifest.Config.MediaType, len(manifest.Layers))
	}
	var config ocispec.Image
	decode(t, readBlob(t, layout, manifest.Config), &config)
	layerData := readBlob(t, layout, manifest.Layers[0])

	if config.OS != "linux" || config.Architecture == "" {
		t.Errorf("config platform %s/%s", config.OS, config.Architecture)
	}
	if mdesc.Platform == nil || mdesc.Platform.Architecture != config.Architecture {
		t.Errorf("index platform %+v does not match the config's %s", mdesc.Platform, config.Architecture)
	}
	// The layer is uncompressed, so the diff_id is the layer's own digest.
	if len(config.RootFS.DiffIDs) != 1 || config.RootFS.DiffIDs[0] != digest.FromBytes(layerData) {
		t.Errorf("config diff_ids %v, want [%s]", config.RootFS.DiffIDs, digest.FromBytes(layerData))
	}
	if got := strings.Join(config.Config.Cmd, " "); got != "sh" {
		t.Errorf("config Cmd %q, want sh", got)
	}
	if len(config.Config.Env) != 1 || config.Config.Env[0] != "PATH="+DefaultPath {
		t.Errorf("config Env %q", config.Config.Env)
	}

	layer := readTar(t, layerData)
	files := byName(layer)
	if sh, ok := files["bin/sh"]; !ok || sh.hdr.Typeflag != tar.TypeSymlink || sh.hdr.Linkname != "busybox" {
		t.Errorf("layer bin/sh: %+v, want a symlink to busybox", sh.hdr)
	}
	if bb := files["bin/busybox"]; !bytes.Equal(bb.data, bbData) || bb.hdr.Mode != 0o755 {
		t.Errorf("layer bin/busybox is not the host's busybox with mode 0755 (mode %o, %d bytes)", bb.hdr.Mode, len(bb.data))
	}
	if tmp := files["tmp/"]; tmp.hdr == nil || tmp.hdr.Typeflag != tar.TypeDir || tmp.hdr.Mode != 0o1777 {
		t.Errorf("layer tmp/: %+v, want a directory with mode 1777", tmp.hdr)
	}
	for _, d := range []string{"root/", "home/joey/", "etc/"} {
		if f, ok := files[d]; !ok || f.hdr.Typeflag != tar.TypeDir {
			t.Errorf("layer has no directory %s", d)
		}
	}
	if !strings.Contains(string(files["etc/passwd"].data), "\njoey:x:1000:1000:") ||
		!strings.HasPrefix(string(files["etc/passwd"].data), "root:x:0:0:") {
		t.Errorf("etc/passwd:\n%s", files["etc/passwd"].data)
	}
	if !strings.Contains(string(files["etc/group"].data), "joey:x:1000:") {
		t.Errorf("etc/group:\n%s", files["etc/group"].data)
	}

	// Reproducible headers, sorted, parents first.
	seen := map[string]bool{}
	for i, f := range layer {
		h := f.hdr
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.ModTime.Unix() != 0 {
			t.Errorf("%s: owner %d:%d (%q:%q) mtime %v; want 0:0, no names, epoch", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		if i > 0 && layer[i-1].hdr.Name >= h.Name {
			t.Errorf("layer not sorted: %s before %s", layer[i-1].hdr.Name, h.Name)
		}
		if parent := filepath.Dir(strings.TrimSuffix(h.Name, "/")); parent != "." && !seen[parent+"/"] {
			t.Errorf("%s comes before its parent directory", h.Name)
		}
		seen[h.Name] = true
	}
}

func TestWriteBusyboxIsDeterministic(t *testing.T) {
	requireBusybox(t)
	var a, b bytes.Buffer
	for _, buf := range []*bytes.Buffer{&a, &b} {
		if err := WriteBusybox(context.Background(), buf, testRef); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("two writes differ: sha256 %s and %s", digest.FromBytes(a.Bytes()), digest.FromBytes(b.Bytes()))
	}
	var other bytes.Buffer
	if err := WriteBusybox(context.Background(), &other, "example.com/other:tag"); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Bytes(), other.Bytes()) {
		t.Fatal("the reference does not reach the layout")
	}
}

func TestBusyboxRootfsMatchesLayer(t *testing.T) {
	requireBusybox(t)
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := BusyboxRootfs(dir); err != nil {
		t.Fatal(err)
	}
	entries, _, err := busyboxEntries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, e := range entries {
		want = append(want, e.name+" "+e.mode.String())
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got = append(got, filepath.ToSlash(rel)+" "+info.Mode().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("unpacked rootfs differs from the layer:\n got %d entries, want %d\n first got %q\n first want %q",
			len(got), len(want), got[:min(5, len(got))], want[:min(5, len(want))])
	}
	// The applet links work: bin/sh runs the copied busybox.
	out, err := exec.Command(filepath.Join(dir, "bin/sh"), "-c", "echo from-rootfs").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "from-rootfs" {
		t.Errorf("rootfs bin/sh: %v: %s", err, out)
	}
	if err := BusyboxRootfs(dir); err == nil {
		t.Error("unpacking over an existing rootfs succeeded")
	}
}

func TestLoadBusyboxRejectsDynamicBinary(t *testing.T) {
	// /bin/true is dynamically linked on Debian; in a libc-less image it
	// could not run.
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadBusybox(data); err == nil || !strings.Contains(err.Error(), "busybox-static") {
		t.Errorf("loadBusybox(/bin/true) = %v, want an error naming busybox-static", err)
	}
	if _, err := loadBusybox([]byte("#!/bin/sh\n")); err == nil {
		t.Error("loadBusybox accepted a shell script")
	}
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox:joey":                  testRef,
		"busybox":                       "docker.io/library/busybox:latest",
		testRef:                         testRef,
		"registry.local:5000/a/b:v1":    "registry.local:5000/a/b:v1",
		"example.com/x@sha256:" + zeros: "example.com/x@sha256:" + zeros,
	} {
		if got, err := NormalizeRef(in); err != nil || got != want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := NormalizeRef("Not A Ref"); err == nil {
		t.Error("NormalizeRef accepted an invalid reference")
	}
}

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"
