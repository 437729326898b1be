// Package cpio writes the "newc" cpio archives the Linux kernel unpacks as
// its initramfs, byte for byte reproducibly.
//
// It is written here rather than taken from a library because the format is
// a fixed 110-byte ASCII header plus padding, and the reproducibility rules
// (sorted entries, fixed inode numbers, zero times and owners) are the whole
// point: a general-purpose writer would take those from caller-built headers
// and so leave every rule to the caller.
package cpio

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"slices"
	"strings"
)

// Entry is one file of the archive.
type Entry struct {
	// Name is the path inside the archive, relative ("etc/joey/modules");
	// a leading "/" is dropped.
	Name string
	// Mode holds the type (fs.ModeDir, fs.ModeCharDevice|fs.ModeDevice, 0 for
	// a regular file) and the permission bits.
	Mode fs.FileMode
	// Data is a regular file's content; empty for other types.
	Data []byte
	// Major and Minor are a device node's numbers.
	Major, Minor uint32
}

// Dir returns a directory entry.
func Dir(name string, perm fs.FileMode) Entry {
	return Entry{Name: name, Mode: fs.ModeDir | perm.Perm()}
}

// File returns a regular file entry.
func File(name string, perm fs.FileMode, data []byte) Entry {
	return Entry{Name: name, Mode: perm.Perm(), Data: data}
}

// CharDevice returns a character device node entry.
func CharDevice(name string, perm fs.FileMode, major, minor uint32) Entry {
	return Entry{Name: name, Mode: fs.ModeDevice | fs.ModeCharDevice | perm.Perm(), Major: major, Minor: minor}
}

// Unix file type bits of the cpio mode field (see stat(2)).
const (
	typeDir  = 0o040000
	typeChar = 0o020000
	typeReg  = 0o100000
)

const trailer = "TRAILER!!!"

// Write writes entries as one newc archive to w. Entries are sorted by name,
// so a directory precedes what it holds and the same set of entries always
// gives the same bytes whatever order the caller built it in. Inode numbers
// follow that order; owners, times and device fields of regular files are
// zero. Duplicate names and unsupported types are errors.
func Write(w io.Writer, entries []Entry) error {
	sorted := make([]Entry, len(entries))
	for i, e := range entries {
		e.Name = strings.TrimPrefix(path.Clean("/"+e.Name), "/")
		if e.Name == "" {
			return fmt.Errorf("cpio: entry %d has no name", i)
		}
		sorted[i] = e
	}
	slices.SortFunc(sorted, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })

	bw := bufio.NewWriter(w)
	for i, e := range sorted {
		if i > 0 && sorted[i-1].Name == e.Name {
			return fmt.Errorf("cpio: %s appears twice", e.Name)
		}
		mode, nlink := uint32(e.Mode.Perm()), uint32(1)
		switch {
		case e.Mode.IsDir():
			mode |= typeDir
			nlink = 2
		case e.Mode&fs.ModeCharDevice != 0:
			mode |= typeChar
		case e.Mode.IsRegular():
			mode |= typeReg
		default:
			return fmt.Errorf("cpio: %s: unsupported file type %v", e.Name, e.Mode.Type())
		}
		if !e.Mode.IsRegular() && len(e.Data) > 0 {
			return fmt.Errorf("cpio: %s: only regular files have data", e.Name)
		}
		if int64(len(e.Data)) > math.MaxUint32 {
			return fmt.Errorf("cpio: %s: %d bytes is more than newc can record", e.Name, len(e.Data))
		}
		writeEntry(bw, uint32(i+1), mode, nlink, e.Major, e.Minor, e.Name, e.Data)
	}
	writeEntry(bw, 0, 0, 1, 0, 0, trailer, nil)
	return bw.Flush()
}

// writeEntry writes one header, the NUL-terminated name and the data, each
// padded to 4 bytes. Errors stick in the bufio.Writer and surface at Flush.
func writeEntry(w *bufio.Writer, ino, mode, nlink, major, minor uint32, name string, data []byte) {
	namesize := len(name) + 1
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check.
	fmt.Fprintf(w, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, namesize, 0)
	w.WriteString(name)
	w.WriteByte(0)
	pad(w, 110+namesize)
	w.Write(data)
	pad(w, len(data))
}

func pad(w *bufio.Writer, n int) {
	for ; n%4 != 0; n++ {
		w.WriteByte(0)
	}
}
