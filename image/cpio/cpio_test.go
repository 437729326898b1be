package cpio

import (
	"bytes"
	"io/fs"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/joeyrt/joey/internal/testutil"
)

func sample() []Entry {
	return []Entry{
		File("init", 0o755, []byte("#!/bin/sh\necho hi\n")),
		Dir("etc", 0o755),
		Dir("etc/joey", 0o755),
		File("/etc/joey/modules", 0o644, []byte("kernel/fs/9p/9p.ko\n")),
		File("etc/joey/empty", 0o644, nil),
		CharDevice("dev/console", 0o600, 5, 1),
		Dir("dev", 0o755),
	}
}

func archive(t *testing.T, entries []Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, entries); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

func requireCpio(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("cpio")
	if err != nil {
		testutil.Unavailable(t, "cpio not found (apt-get install cpio)")
	}
	return p
}

// The archive must be what GNU cpio (and so the kernel's unpacker, which
// reads the same format) sees: names in sorted order, types, modes, device
// numbers and content.
func TestWriteIsReadByGNUCpio(t *testing.T) {
	bin := requireCpio(t)
	data := archive(t, sample())

	cmd := exec.Command(bin, "-itv", "--quiet", "--numeric-uid-gid")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -itv: %v\n%s", err, out)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		// perms links uid gid size-or-dev... name: keep perms, owner and name.
		got = append(got, f[0]+" "+f[2]+":"+f[3]+" "+f[len(f)-1])
	}
	want := []string{
		"drwxr-xr-x 0:0 dev",
		"crw------- 0:0 dev/console",
		"drwxr-xr-x 0:0 etc",
		"drwxr-xr-x 0:0 etc/joey",
		"-rw-r--r-- 0:0 etc/joey/empty",
		"-rw-r--r-- 0:0 etc/joey/modules",
		"-rwxr-xr-x 0:0 init",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("cpio -itv lists\n%s\nwant\n%s\n(full output:\n%s)", strings.Join(got, "\n"), strings.Join(want, "\n"), out)
	}
	if !regexp.MustCompile(`(?m)^c.* 5,\s+1 .*dev/console$`).Match(out) {
		t.Errorf("dev/console should be device 5,1:\n%s", out)
	}

	for _, name := range []string{"init", "etc/joey/modules"} {
		cmd := exec.Command(bin, "-i", "--quiet", "--to-stdout", name)
		cmd.Stdin = bytes.NewReader(data)
		content, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio --to-stdout %s: %v", name, err)
		}
		var want []byte
		for _, e := range sample() {
			if strings.TrimPrefix(e.Name, "/") == name {
				want = e.Data
			}
		}
		if !bytes.Equal(content, want) {
			t.Errorf("%s holds %q, want %q", name, content, want)
		}
	}
}

func TestWriteIsIndependentOfEntryOrder(t *testing.T) {
	a := archive(t, sample())
	rev := sample()
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if b := archive(t, rev); !bytes.Equal(a, b) {
		t.Fatal("the same entries in another order gave different bytes")
	}
}

// Every header and name is padded to 4 bytes and the archive ends with the
// trailer entry, which the kernel needs to stop unpacking cleanly.
func TestWriteAlignsAndEndsWithTrailer(t *testing.T) {
	data := archive(t, []Entry{File("a", 0o644, []byte("xyz"))})
	// header 110 + "a\0" = 112; data 3 padded to 4; trailer header 110 +
	// "TRAILER!!!\0" 11 = 121 padded to 124.
	if want := 112 + 4 + 124; len(data) != want {
		t.Errorf("archive is %d bytes, want %d", len(data), want)
	}
	if !bytes.HasPrefix(data, []byte("070701")) {
		t.Errorf("archive does not start with the newc magic: %q", data[:6])
	}
	if !bytes.Contains(data[116:], []byte("TRAILER!!!\x00")) {
		t.Error("archive has no trailer")
	}
	// Inode of the first entry is 1, its mtime 0.
	if ino, mtime := string(data[6:14]), string(data[46:54]); ino != "00000001" || mtime != "00000000" {
		t.Errorf("ino %s mtime %s, want 00000001 and 00000000", ino, mtime)
	}
}

func TestWriteRejectsBadEntries(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
		want    string
	}{
		{"duplicate name", []Entry{File("a", 0o644, nil), File("/a", 0o644, nil)}, "appears twice"},
		{"empty name", []Entry{File("/", 0o644, nil)}, "no name"},
		{"symlink", []Entry{{Name: "l", Mode: fs.ModeSymlink | 0o777}}, "unsupported file type"},
		{"directory with data", []Entry{{Name: "d", Mode: fs.ModeDir | 0o755, Data: []byte("x")}}, "only regular files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(&bytes.Buffer{}, tt.entries)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Write error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
