package kernel

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// UncompressedPath is where a module file goes in the image: compressed
// modules are stored plain, so "x.ko.xz" becomes "x.ko".
func UncompressedPath(path string) string {
	for _, ext := range []string{".xz", ".gz", ".zst"} {
		if strings.HasSuffix(path, ".ko"+ext) {
			return strings.TrimSuffix(path, ext)
		}
	}
	return path
}

// uncompressModule returns the ELF of a module file whose name says how it
// is compressed (.ko, .ko.gz, .ko.xz, .ko.zst).
func uncompressModule(ctx context.Context, name string, data []byte) ([]byte, error) {
	var out bytes.Buffer
	var err error
	switch {
	case strings.HasSuffix(name, ".ko"):
		return data, nil
	case strings.HasSuffix(name, ".ko.gz"):
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(data)); err == nil {
			_, err = io.Copy(&out, zr)
		}
	case strings.HasSuffix(name, ".ko.xz"):
		err = filter(ctx, bytes.NewReader(data), &out, "xz-utils", "xz", "-dc")
	case strings.HasSuffix(name, ".ko.zst"):
		err = filter(ctx, bytes.NewReader(data), &out, "zstd", "zstd", "-dc")
	default:
		return nil, fmt.Errorf("module %s: not a .ko, .ko.gz, .ko.xz or .ko.zst file", name)
	}
	if err != nil {
		return nil, fmt.Errorf("decompress module %s: %w", name, err)
	}
	return out.Bytes(), nil
}

// filter runs a decompressor from stdin to stdout. A missing command is
// reported with the Debian package that provides it.
func filter(ctx context.Context, stdin io.Reader, stdout io.Writer, pkg, name string, args ...string) error {
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("%s is not installed (apt-get install %s)", name, pkg)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}
