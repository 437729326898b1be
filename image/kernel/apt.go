package kernel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// MetaPackage is Debian's package that always depends on the current kernel.
const MetaPackage = "linux-image-amd64"

// Download makes sure dir holds the .deb of the kernel MetaPackage points
// to, and returns its path. `apt-get download linux-image-amd64` would only
// fetch the metapackage, so the real package is resolved first. A file
// already in dir is reused when its SHA-256 is the one apt expects; a
// download happens in a temporary directory and is renamed into place only
// once verified, so an interrupted one leaves nothing behind.
func Download(ctx context.Context, dir string, progress io.Writer) (string, error) {
	out, err := aptOutput(ctx, "apt-cache", "depends", MetaPackage)
	if err != nil {
		return "", err
	}
	pkg, err := parseDepends(out, "linux-image-")
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w", MetaPackage, err)
	}
	if out, err = aptOutput(ctx, "apt-cache", "show", "--no-all-versions", pkg); err != nil {
		return "", err
	}
	info, err := parseShow(out)
	if err != nil {
		return "", fmt.Errorf("apt-cache show %s: %w", pkg, err)
	}
	target := filepath.Join(dir, path.Base(info.Filename))
	if sum, err := fileSHA256(target); err == nil && sum == info.SHA256 {
		fmt.Fprintf(progress, "using %s (already downloaded)\n", target)
		return target, nil
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("--download-dir: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return "", fmt.Errorf("--download-dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(progress, "downloading %s %s (%.1f MB) into %s\n", pkg, info.Version, float64(info.Size)/1e6, dir)
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg+"="+info.Version)
	cmd.Dir = tmp
	if msg, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("apt-get download %s: %w: %s", pkg, err, strings.TrimSpace(string(msg)))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d .deb files, want 1", pkg, len(debs))
	}
	sum, err := fileSHA256(debs[0])
	if err != nil {
		return "", err
	}
	if sum != info.SHA256 {
		return "", fmt.Errorf("apt-get download %s: SHA-256 %s, but the archive says %s", pkg, sum, info.SHA256)
	}
	if err := os.Rename(debs[0], target); err != nil {
		return "", fmt.Errorf("--download-dir: %w", err)
	}
	return target, nil
}

func aptOutput(ctx context.Context, name string, args ...string) (string, error) {
	if _, err := exec.LookPath(name); err != nil {
		return "", fmt.Errorf("%s not found: fetching the kernel needs apt (Debian); or pass --kernel-package FILE.deb or --kernel-version VER", name)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%s %s: %w: %s (run apt-get update?)", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// parseDepends returns the first dependency starting with prefix in the
// output of `apt-cache depends`:
//
//	linux-image-amd64
//	  Depends: linux-image-6.1.0-56-amd64
func parseDepends(out, prefix string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		field, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		value = strings.Trim(strings.TrimSpace(value), "<>")
		if ok && strings.TrimPrefix(field, "|") == "Depends" && strings.HasPrefix(value, prefix) {
			return value, nil
		}
	}
	return "", fmt.Errorf("no dependency named %s* in:\n%s", prefix, out)
}

type aptPackage struct {
	Version, Filename, SHA256 string
	Size                      int64
}

// parseShow reads the fields Download needs from `apt-cache show`.
func parseShow(out string) (aptPackage, error) {
	var p aptPackage
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" && p.Filename != "" {
			break // only the first stanza
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		switch field {
		case "Version":
			p.Version = value
		case "Filename":
			p.Filename = value
		case "SHA256":
			p.SHA256 = strings.ToLower(value)
		case "Size":
			fmt.Sscan(value, &p.Size)
		}
	}
	if p.Version == "" || p.Filename == "" || len(p.SHA256) != 64 {
		return p, errors.New("no Version, Filename and SHA256 fields")
	}
	return p, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
