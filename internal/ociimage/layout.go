package ociimage

import (
	"bytes"
	"context"
	_ "crypto/sha256" // go-digest finds its sha256 through crypto.RegisterHash
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"path"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// AnnotationImageName is the index annotation containerd's importer takes the
// image's name from.
const AnnotationImageName = "io.containerd.image.name"

// blob is one content-addressed file of the layout.
type blob struct {
	desc ocispec.Descriptor
	data []byte
}

func newBlob(mediaType string, data []byte) blob {
	return blob{
		desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))},
		data: data,
	}
}

func jsonBlob(mediaType string, v any) (blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return blob{}, fmt.Errorf("encode %s: %w", mediaType, err)
	}
	return newBlob(mediaType, data), nil
}

// NormalizeRef returns the full form of an image reference as containerd names
// images ("busybox:joey" → "docker.io/library/busybox:joey"), so that the name
// the layout carries is the one `ctr run` is later given.
func NormalizeRef(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	return named.String(), nil
}

// WriteBusybox writes to w an OCI image layout, as a tar stream, holding one
// image named ref (normalized with NormalizeRef): the busybox rootfs as a
// single uncompressed layer, `sh` as its default command. The output depends
// only on ref and the host's busybox binary. `ctr image import` takes it as is.
func WriteBusybox(ctx context.Context, w io.Writer, ref string) error {
	name, err := NormalizeRef(ref)
	if err != nil {
		return fmt.Errorf("write busybox image: %w", err)
	}
	entries, arch, err := busyboxEntries(ctx)
	if err != nil {
		return fmt.Errorf("write busybox image: %w", err)
	}
	if err := writeLayout(w, name, arch, entries); err != nil {
		return fmt.Errorf("write busybox image: %w", err)
	}
	return nil
}

// writeLayout builds the layer, config, manifest and index of a one-layer
// image and writes the layout tar.
func writeLayout(w io.Writer, name, arch string, entries []entry) error {
	var layerTar bytes.Buffer
	if err := writeTar(&layerTar, entries); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	layer := newBlob(ocispec.MediaTypeImageLayer, layerTar.Bytes())
	platform := ocispec.Platform{OS: "linux", Architecture: arch}

	// The layer is not compressed, so its diff_id is its own digest.
	config, err := jsonBlob(ocispec.MediaTypeImageConfig, ocispec.Image{
		Platform: platform,
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=" + DefaultPath},
			Cmd:        []string{"sh"},
			WorkingDir: "/",
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.desc.Digest}},
	})
	if err != nil {
		return err
	}
	manifest, err := jsonBlob(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config.desc,
		Layers:    []ocispec.Descriptor{layer.desc},
	})
	if err != nil {
		return err
	}

	desc := manifest.desc
	desc.Platform = &platform
	// containerd names the image after io.containerd.image.name; other tools
	// (and `ctr import --base-name`) read the OCI ref.name.
	desc.Annotations = map[string]string{
		AnnotationImageName:       name,
		ocispec.AnnotationRefName: name,
	}
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{desc},
	})
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	ociLayout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return fmt.Errorf("encode %s: %w", ocispec.ImageLayoutFile, err)
	}

	blobDir := path.Join(ocispec.ImageBlobsDir, string(digest.Canonical))
	files := []entry{
		{name: ocispec.ImageLayoutFile, mode: 0o644, data: ociLayout},
		{name: ocispec.ImageIndexFile, mode: 0o644, data: index},
		{name: ocispec.ImageBlobsDir, mode: 0o755 | fs.ModeDir},
		{name: blobDir, mode: 0o755 | fs.ModeDir},
	}
	for _, b := range []blob{config, manifest, layer} {
		files = append(files, entry{name: path.Join(blobDir, b.desc.Digest.Encoded()), mode: 0o644, data: b.data})
	}
	return writeTar(w, files)
}
