// Package kmod knows the kernel's module metadata — modules.dep,
// modules.softdep, modules.alias, modules.builtin and the .modinfo section of
// module files — and puts a set of modules in the order they must be loaded.
//
// An installed kernel has the files depmod generates; a Debian kernel
// package has only modules.builtin and the modules themselves (depmod runs
// in its postinst), so an Index can be filled from either.
package kmod

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Module is one loadable module file.
type Module struct {
	// Name is the kernel's name for it: "9pnet_virtio", "virtio_rng".
	Name string
	// Path is the file relative to /lib/modules/<version>/, as the kernel
	// ships it ("kernel/fs/9p/9p.ko", possibly ending .ko.xz).
	Path string
	// Depends names the modules it needs loaded first.
	Depends []string
	// SoftPre are its "softdep pre:" entries: module names or aliases that
	// modprobe loads before it when they exist.
	SoftPre []string
}

// Index holds every module of one kernel, what is built in, and aliases.
// The zero value is not usable; call NewIndex.
type Index struct {
	modules        map[string]*Module
	softdeps       map[string][]string // extra softdep pre: from modules.softdep
	aliases        map[string][]string // normalized alias → module names
	builtin        map[string]bool     // built-in module names
	builtinAliases map[string]bool
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		modules:        map[string]*Module{},
		softdeps:       map[string][]string{},
		aliases:        map[string][]string{},
		builtin:        map[string]bool{},
		builtinAliases: map[string]bool{},
	}
}

// Name returns the kernel's name for a module file or name: the base name
// without ".ko" and compression suffix, with dashes as underscores (the
// kernel treats "virtio-rng" and "virtio_rng" alike).
func Name(pathOrName string) string {
	base := path.Base(pathOrName)
	if i := strings.Index(base, ".ko"); i > 0 && isModuleFile(base) {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// IsModuleFile reports whether a file name is a kernel module, compressed or not.
func IsModuleFile(name string) bool { return isModuleFile(path.Base(name)) }

func isModuleFile(base string) bool {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.gz", ".ko.zst"} {
		if strings.HasSuffix(base, ext) && len(base) > len(ext) {
			return true
		}
	}
	return false
}

// normAlias folds dashes the way modprobe does before comparing aliases.
func normAlias(a string) string { return strings.ReplaceAll(a, "-", "_") }

// Add records a module. A second module of the same name is an error: the
// kernel could load only one of them, and which is not ours to guess.
func (x *Index) Add(m Module) error {
	m.Name = Name(m.Name)
	if m.Name == "" || m.Path == "" {
		return fmt.Errorf("module %q at %q: name and path are required", m.Name, m.Path)
	}
	if old, ok := x.modules[m.Name]; ok {
		return fmt.Errorf("module %s is both %s and %s", m.Name, old.Path, m.Path)
	}
	deps := make([]string, len(m.Depends))
	for i, d := range m.Depends {
		deps[i] = Name(d)
	}
	m.Depends = deps
	x.modules[m.Name] = &m
	return nil
}

// AddAlias records that module answers to alias.
func (x *Index) AddAlias(alias, module string) {
	a, n := normAlias(alias), Name(module)
	if !slices.Contains(x.aliases[a], n) {
		x.aliases[a] = append(x.aliases[a], n)
		slices.Sort(x.aliases[a])
	}
}

// AddSoftdep records "softdep module pre: names..." from modules.softdep or
// a modprobe configuration, in addition to the module's own.
func (x *Index) AddSoftdep(module string, pre []string) {
	n := Name(module)
	x.softdeps[n] = append(x.softdeps[n], pre...)
}

// AddBuiltin records a module compiled into the kernel image.
func (x *Index) AddBuiltin(name string) { x.builtin[Name(name)] = true }

// AddBuiltinAlias records an alias of a built-in module.
func (x *Index) AddBuiltinAlias(alias string) { x.builtinAliases[normAlias(alias)] = true }

// Len is the number of loadable modules in the index.
func (x *Index) Len() int { return len(x.modules) }

// Lookup returns the loadable module of that name.
func (x *Index) Lookup(name string) (*Module, bool) {
	m, ok := x.modules[Name(name)]
	return m, ok
}
