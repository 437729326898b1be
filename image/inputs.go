package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"
)

// staticBinary reads an executable that must run inside the guest: an
// x86-64 ELF without a program interpreter, since the initramfs has no
// dynamic loader or libc. flag names the option that chose it, and fix
// says how to get a good one.
func staticBinary(path, flag, fix string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s %s: no such file: %s", flag, path, fix)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s %s is not an ELF executable: %s", flag, path, fix)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s %s is a %v %v binary, the guest is x86-64: %s", flag, path, f.Class, f.Machine, fix)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := bytes.CutSuffix(data[p.Off:min(p.Off+p.Filesz, uint64(len(data)))], []byte{0})
			return nil, fmt.Errorf("%s %s is dynamically linked (interpreter %s), and the guest has no libc: %s", flag, path, interp, fix)
		}
	}
	return data, nil
}

// agentVersion asks the agent for its version. It is informational, so a
// binary that does not answer quickly gives "".
func agentVersion(ctx context.Context, path string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// inputs are what an image is made from, reduced to digests.
type inputs struct {
	kernel       string // "package <sha256>" or "installed <release> <digest>"
	agentSHA256  string
	debugConsole bool
	busybox      string // SHA-256 of busybox, with debugConsole only
}

// digest is the inputs digest of a manifest: one line per input, hashed.
// The format version comes first, so a builder that lays files out
// differently never matches an older image.
func (in inputs) digest() string {
	var b strings.Builder
	fmt.Fprintf(&b, "joey image format %d\n", FormatVersion)
	fmt.Fprintf(&b, "kernel %s\n", in.kernel)
	fmt.Fprintf(&b, "agent %s\n", in.agentSHA256)
	fmt.Fprintf(&b, "debug-console %t\n", in.debugConsole)
	if in.debugConsole {
		fmt.Fprintf(&b, "busybox %s\n", in.busybox)
	}
	return sha256Hex([]byte(b.String()))
}
