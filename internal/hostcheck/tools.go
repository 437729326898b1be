package hostcheck

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// runTimeout bounds each binary Probe runs, so a hung binary cannot hang
// `joey check`.
const runTimeout = 10 * time.Second

// lookPath finds an executable called name in the directories of list (as
// in $PATH), or returns "".
func lookPath(list, name string) string {
	for _, dir := range filepath.SplitList(list) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if isExecutable(p) {
			return p
		}
	}
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// run runs a binary and returns its standard output; a failure carries the
// first line of its standard error.
func run(ctx context.Context, path string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := firstLine(stderr.Bytes()); msg != "" {
			return nil, fmt.Errorf("%s %s: %w: %s", filepath.Base(path), strings.Join(args, " "), err, msg)
		}
		return nil, fmt.Errorf("%s %s: %w", filepath.Base(path), strings.Join(args, " "), err)
	}
	return stdout.Bytes(), nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

const installContainerd = "GOBIN=/usr/local/bin go install github.com/containerd/containerd/v2/cmd/containerd@v2.4.2 github.com/containerd/containerd/v2/cmd/ctr@v2.4.2 (Debian 12's containerd 1.6 cannot start joey's shim)"

// containerd reports the containerd on PATH. joey's shim is built on
// containerd 2's shim library, whose start handshake 1.x does not speak.
func containerd(ctx context.Context, h Host) Check {
	c := Check{Name: "containerd"}
	path := lookPath(h.PATH, "containerd")
	if path == "" {
		c.Status = Unavailable
		c.Detail = "containerd not found on PATH; `joey run` works without it, the shim needs containerd 2.x"
		c.Fix = installContainerd
		return c
	}
	out, err := run(ctx, path, "--version")
	if err != nil {
		c.Status = Warning
		c.Detail = fmt.Sprintf("%s does not run: %v", path, err)
		c.Fix = installContainerd
		return c
	}
	version, major := containerdVersion(out)
	c.Value = version
	switch {
	case major >= 2:
		c.Status = OK
		c.Detail = fmt.Sprintf("%s (containerd %s)", path, version)
	case major == 1:
		c.Status = Warning
		c.Detail = fmt.Sprintf("%s is containerd %s: containerd 1.x cannot start joey's shim (it needs containerd 2's bootstrap)", path, version)
		c.Fix = installContainerd
	default:
		c.Status = Warning
		c.Detail = fmt.Sprintf("%s --version printed %q, which has no version joey understands", path, firstLine(out))
		c.Fix = "check that it is containerd 2.x"
	}
	return c
}

// containerdVersion parses "containerd <module> <version> <revision>" and
// returns the version without its "v" and its major number (0 if none).
func containerdVersion(out []byte) (string, int) {
	f := strings.Fields(firstLine(out))
	if len(f) < 3 || f[0] != "containerd" {
		return "", 0
	}
	v := strings.TrimPrefix(f[2], "v")
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return v, 0
	}
	return v, n
}
