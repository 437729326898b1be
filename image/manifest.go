package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FormatVersion changes whenever the builder would make different bytes
// from the same inputs (new files, other modules, another layout), so that
// an image made by an older joey is rebuilt rather than reused.
const FormatVersion = 1

// Names of the files of an image directory.
const (
	VmlinuzFile  = "vmlinuz"       // the kernel as shipped (bzImage)
	VmlinuxFile  = "vmlinux"       // the decompressed ELF, booted through PVH
	InitrdFile   = "initrd.img"    // gzip'd newc cpio with joey-agent as /init
	ManifestFile = "manifest.json" // this Manifest
)

// imageFiles are the files a manifest must list.
var imageFiles = []string{VmlinuzFile, VmlinuxFile, InitrdFile}

// Manifest describes a built image: where it came from and the checksum of
// every file. It holds no times or host paths, so the same inputs give the
// same manifest.
type Manifest struct {
	FormatVersion int `json:"format_version"`
	// InputsDigest is the SHA-256 over everything the image is made from;
	// a build whose inputs have this digest would write the same bytes.
	InputsDigest  string       `json:"inputs_digest"`
	KernelVersion string       `json:"kernel_version"`
	Kernel        KernelSource `json:"kernel"`
	Agent         AgentInfo    `json:"agent"`
	DebugConsole  bool         `json:"debug_console"`
	// VmlinuxPVH says vmlinux has a PVH entry point; without one only
	// vmlinuz can be booted.
	VmlinuxPVH bool `json:"vmlinux_pvh"`
	// Modules are the initramfs's kernel modules in load order, relative to
	// /lib/modules/<KernelVersion>/ — the content of /etc/joey/modules.
	Modules []string `json:"modules"`
	// Files maps each file of the image directory (but the manifest) to its
	// checksum.
	Files map[string]FileInfo `json:"files"`
}

// KernelSource says which kernel the image was made from.
type KernelSource struct {
	// Kind is "package" (a .deb) or "installed" (/boot and /lib/modules).
	Kind string `json:"kind"`
	// Name is the package's file name, or the installed release.
	Name string `json:"name"`
	// SHA256 is the package's checksum, or for an installed kernel the
	// digest of its bzImage and of the modules taken from it.
	SHA256 string `json:"sha256"`
}

// AgentInfo identifies the joey-agent inside the image.
type AgentInfo struct {
	SHA256 string `json:"sha256"`
	// Version is what `joey-agent --version` printed; empty if it failed.
	Version string `json:"version,omitempty"`
}

// FileInfo is the checksum of one file.
type FileInfo struct {
	SHA256 string `json:"sha256"` // lower-case hex
	Size   int64  `json:"size"`
}

// ReadManifest reads dir/manifest.json and checks it describes an image.
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("read image manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	if m.KernelVersion == "" {
		return nil, fmt.Errorf("%s has no kernel_version", filepath.Join(dir, ManifestFile))
	}
	for _, name := range imageFiles {
		if _, ok := m.Files[name]; !ok {
			return nil, fmt.Errorf("%s does not list %s", filepath.Join(dir, ManifestFile), name)
		}
	}
	return &m, nil
}

// Verify checks every file the manifest lists in dir against its size and
// SHA-256, and says which one differs.
func (m *Manifest) Verify(ctx context.Context, dir string) error {
	names := make([]string, 0, len(m.Files))
	for name := range m.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !filepath.IsLocal(name) || strings.ContainsRune(name, '/') {
			return fmt.Errorf("manifest lists %q, which is not a file name", name)
		}
		got, err := hashFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if want := m.Files[name]; got != want {
			return fmt.Errorf("%s: size %d sha256 %s, but the manifest says size %d sha256 %s",
				filepath.Join(dir, name), got.Size, got.SHA256, want.Size, want.SHA256)
		}
	}
	return nil
}

func hashFile(path string) (FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileInfo{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileInfo{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return FileInfo{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// upToDate reports whether dir holds an image of this format whose inputs
// digest is digest and whose files are intact.
func upToDate(ctx context.Context, dir, digest string) (*Manifest, bool) {
	m, err := ReadManifest(dir)
	if err != nil || m.FormatVersion != FormatVersion || m.InputsDigest != digest {
		return nil, false
	}
	if err := m.Verify(ctx, dir); err != nil {
		return nil, false
	}
	return m, true
}

func writeManifest(dir string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(dir, ManifestFile), append(data, '\n'))
}

// writeFileSync writes a file and flushes it to disk before it is renamed
// into place.
func writeFileSync(path string, data []byte) (retErr error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err := f.Close(); retErr == nil {
			retErr = err
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}
