package kmod

import (
	"fmt"
	"slices"
	"strings"
)

// Resolve returns the modules to load for roots, in load order: every
// module after its dependencies and after the modules its "softdep pre:"
// entries name, each once. Roots and dependencies that are built into the
// kernel are left out. A root or dependency that is neither a module nor
// built in is an error naming it; a softdep that matches nothing is skipped,
// as modprobe does.
//
// A softdep may name an alias that several modules provide (ext4's
// "crypto-crc32c" is both crc32c_generic and crc32c_intel). If one of them
// is already needed, that one satisfies it; otherwise all are loaded, as
// modprobe would.
func (x *Index) Resolve(roots []string) ([]*Module, error) {
	r := resolver{x: x, state: map[string]visitState{}}
	needed, err := x.hardClosure(roots)
	if err != nil {
		return nil, err
	}
	r.needed = needed
	for _, root := range roots {
		if err := r.visit(Name(root), nil, false); err != nil {
			return nil, err
		}
	}
	return r.order, nil
}

// hardClosure is the set of module names roots need through Depends alone;
// Resolve uses it to prefer an already-needed module for an alias softdep.
func (x *Index) hardClosure(roots []string) (map[string]bool, error) {
	seen := map[string]bool{}
	var walk func(name string, by []string) error
	walk = func(name string, by []string) error {
		if seen[name] || x.builtin[name] {
			return nil
		}
		m, ok := x.modules[name]
		if !ok {
			return missing(name, by)
		}
		seen[name] = true
		for _, d := range m.Depends {
			if err := walk(d, append(slices.Clone(by), name)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, root := range roots {
		if err := walk(Name(root), nil); err != nil {
			return nil, err
		}
	}
	return seen, nil
}

func missing(name string, by []string) error {
	if len(by) == 0 {
		return fmt.Errorf("required module %s is neither a module file of this kernel nor built in", name)
	}
	return fmt.Errorf("module %s (needed by %s) is neither a module file of this kernel nor built in",
		name, chain(by))
}

// chain renders the modules that led to a module, nearest first:
// "netfs ← 9p" says netfs needs it and 9p needs netfs.
func chain(by []string) string {
	r := slices.Clone(by)
	slices.Reverse(r)
	return strings.Join(r, " ← ")
}

type visitState int

const (
	unvisited visitState = iota
	visiting
	done
)

type resolver struct {
	x      *Index
	needed map[string]bool
	state  map[string]visitState
	order  []*Module
}

// visit places name after everything it needs. by is the chain of modules
// that led here, for error messages; soft says name came from a softdep,
// where a cycle is tolerated rather than an error.
func (r *resolver) visit(name string, by []string, soft bool) error {
	if r.x.builtin[name] {
		return nil
	}
	switch r.state[name] {
	case done:
		return nil
	case visiting:
		if soft {
			return nil
		}
		return fmt.Errorf("modules depend on each other in a cycle: %s ← %s", name, chain(by))
	}
	m, ok := r.x.modules[name]
	if !ok {
		return missing(name, by)
	}
	r.state[name] = visiting
	path := append(slices.Clone(by), name)
	for _, s := range append(slices.Clone(m.SoftPre), r.x.softdeps[name]...) {
		for _, c := range r.softTargets(s) {
			if err := r.visit(c, path, true); err != nil {
				return err
			}
		}
	}
	// A modules.dep line lists the full closure with the deepest
	// dependency last; walking it backwards loads that one first.
	for i := len(m.Depends) - 1; i >= 0; i-- {
		if err := r.visit(m.Depends[i], path, false); err != nil {
			return err
		}
	}
	r.state[name] = done
	r.order = append(r.order, m)
	return nil
}

// softTargets resolves a softdep entry to the module names to load for it.
func (r *resolver) softTargets(entry string) []string {
	if n := Name(entry); r.x.modules[n] != nil {
		return []string{n}
	}
	a := normAlias(entry)
	if r.x.builtin[a] || r.x.builtinAliases[a] {
		return nil
	}
	candidates := r.x.aliases[a]
	for _, c := range candidates {
		if r.needed[c] || r.state[c] != unvisited {
			return []string{c}
		}
	}
	return candidates
}
