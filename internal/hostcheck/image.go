package hostcheck

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ManifestName is the file in the image directory that lists its files.
const ManifestName = "manifest.json"

// imageFiles are the files every guest image has: the kernel as bzImage and
// as decompressed ELF (for PVH boots), and the initramfs with the agent.
var imageFiles = []string{"vmlinux", "vmlinuz", "initrd.img"}

// manifest is the part of the image builder's manifest.json this check
// reads; other fields are ignored. Each entry of Files describes one file
// of the image directory by its plain name.
type manifest struct {
	KernelVersion string                  `json:"kernel_version"`
	Files         map[string]manifestFile `json:"files"`
}

type manifestFile struct {
	SHA256 string `json:"sha256"` // lower-case hex
	Size   int64  `json:"size"`   // bytes
}

func image(ctx context.Context, dir string) Check {
	c := Check{Name: "image", Required: true}
	build := fmt.Sprintf("build it: joey image build --out %s (make image builds the test image)", dir)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		c.Status = Missing
		c.Detail = fmt.Sprintf("no guest image at %s", dir)
		c.Fix = build
		return c
	}
	m, err := readManifest(filepath.Join(dir, ManifestName))
	if err == nil {
		err = verifyImage(ctx, dir, m)
	}
	if err != nil {
		c.Status = Missing
		c.Detail = fmt.Sprintf("guest image at %s is not valid: %v", dir, err)
		c.Fix = "rebuild it: joey image build --out " + dir
		return c
	}
	c.Status, c.Value = OK, m.KernelVersion
	c.Detail = fmt.Sprintf("%s: kernel %s, %d files match the manifest", dir, m.KernelVersion, len(m.Files))
	return c
}

func readManifest(path string) (manifest, error) {
	var m manifest
	b, err := os.ReadFile(path)
	if err != nil {
		return m, fmt.Errorf("read %s: %w", ManifestName, unwrapPath(err))
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("parse %s: %w", ManifestName, err)
	}
	if m.KernelVersion == "" {
		return m, fmt.Errorf("%s has no kernel_version", ManifestName)
	}
	for _, name := range imageFiles {
		if _, ok := m.Files[name]; !ok {
			return m, fmt.Errorf("%s does not list %s in files", ManifestName, name)
		}
	}
	return m, nil
}

// verifyImage checks every file the manifest lists, in name order, against
// its size and SHA-256.
func verifyImage(ctx context.Context, dir string, m manifest) error {
	names := make([]string, 0, len(m.Files))
	for name := range m.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if name != filepath.Base(name) || name == "." || name == ".." || strings.HasPrefix(name, "/") {
			return fmt.Errorf("%s lists %q, which is not a plain file name", ManifestName, name)
		}
		if err := verifyFile(filepath.Join(dir, name), m.Files[name]); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func verifyFile(path string, want manifestFile) error {
	f, err := os.Open(path)
	if err != nil {
		return unwrapPath(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != want.Size {
		return fmt.Errorf("size %d, manifest says %d", fi.Size(), want.Size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want.SHA256) {
		return fmt.Errorf("sha256 %s, manifest says %s", got, want.SHA256)
	}
	return nil
}
