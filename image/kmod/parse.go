package kmod

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"strings"
)

// ReadDep adds the modules of a depmod-generated modules.dep:
// "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/jbd2/jbd2.ko".
func (x *Index) ReadDep(r io.Reader) error {
	return eachLine(r, "modules.dep", func(line string) error {
		file, deps, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(file) == "" {
			return fmt.Errorf("want \"path: dependencies\", got %q", line)
		}
		m := Module{Name: Name(file), Path: strings.TrimSpace(file)}
		for _, d := range strings.Fields(deps) {
			m.Depends = append(m.Depends, Name(d))
		}
		return x.Add(m)
	})
}

// ReadSoftdep adds the "pre:" entries of a modules.softdep (or modprobe.d)
// file: "softdep ext4 pre: crc32c post: foo". "post:" entries load after the
// module and are not needed to load it, so they are ignored.
func (x *Index) ReadSoftdep(r io.Reader) error {
	return eachLine(r, "modules.softdep", func(line string) error {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "softdep" {
			return fmt.Errorf("want \"softdep MODULE pre: ...\", got %q", line)
		}
		x.AddSoftdep(f[1], softPre(f[2:]))
		return nil
	})
}

// softPre returns the names between "pre:" and the next "post:".
func softPre(words []string) []string {
	var pre []string
	inPre := false
	for _, w := range words {
		switch w {
		case "pre:":
			inPre = true
		case "post:":
			inPre = false
		default:
			if inPre {
				pre = append(pre, w)
			}
		}
	}
	return pre
}

// ReadAlias adds a modules.alias file: "alias crypto-crc32c crc32c_generic".
// Only exact aliases are ever looked up (softdeps name plain aliases), so
// device patterns are stored but never matched as globs.
func (x *Index) ReadAlias(r io.Reader) error {
	return eachLine(r, "modules.alias", func(line string) error {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" {
			return fmt.Errorf("want \"alias ALIAS MODULE\", got %q", line)
		}
		x.AddAlias(f[1], f[2])
		return nil
	})
}

// ReadBuiltin adds modules.builtin: one path per line of a module that is
// compiled into the kernel image.
func (x *Index) ReadBuiltin(r io.Reader) error {
	return eachLine(r, "modules.builtin", func(line string) error {
		x.AddBuiltin(line)
		return nil
	})
}

// ReadBuiltinModinfo adds the aliases of built-in modules from
// modules.builtin.modinfo: NUL-separated "module.key=value" strings.
func (x *Index) ReadBuiltinModinfo(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read modules.builtin.modinfo: %w", err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		key, value, ok := strings.Cut(string(kv), "=")
		if _, field, dotted := strings.Cut(key, "."); ok && dotted && field == "alias" {
			x.AddBuiltinAlias(value)
		}
	}
	return nil
}

// eachLine calls fn for every line that is not blank or a comment, and
// names the file and line number in its errors.
func eachLine(r io.Reader, file string, fn func(line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(line); err != nil {
			return fmt.Errorf("%s line %d: %w", file, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	return nil
}

// Modinfo is what a module file says about itself in its .modinfo section.
type Modinfo struct {
	Name     string   // "name=", absent before Linux 5.3
	Depends  []string // "depends=", comma-separated module names
	SoftPre  []string // the "pre:" part of every "softdep="
	Aliases  []string // every "alias="
	Vermagic string   // "vermagic=", starts with the kernel release
}

// ParseModinfo reads the .modinfo section of an uncompressed module file.
func ParseModinfo(module []byte) (Modinfo, error) {
	var info Modinfo
	f, err := elf.NewFile(bytes.NewReader(module))
	if err != nil {
		return info, fmt.Errorf("parse module ELF: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return info, fmt.Errorf("module ELF has no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return info, fmt.Errorf("read .modinfo: %w", err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		key, value, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue // padding between entries
		}
		switch key {
		case "name":
			info.Name = value
		case "depends":
			for _, d := range strings.Split(value, ",") {
				if d = strings.TrimSpace(d); d != "" {
					info.Depends = append(info.Depends, d)
				}
			}
		case "softdep":
			info.SoftPre = append(info.SoftPre, softPre(strings.Fields(value))...)
		case "alias":
			info.Aliases = append(info.Aliases, value)
		case "vermagic":
			info.Vermagic = value
		}
	}
	return info, nil
}

// AddModinfo records the module at path (relative to /lib/modules/<version>/)
// from its own metadata, the way depmod would.
func (x *Index) AddModinfo(path string, info Modinfo) error {
	name := info.Name
	if name == "" {
		name = Name(path)
	}
	if err := x.Add(Module{Name: name, Path: path, Depends: info.Depends, SoftPre: info.SoftPre}); err != nil {
		return err
	}
	for _, a := range info.Aliases {
		x.AddAlias(a, name)
	}
	return nil
}
