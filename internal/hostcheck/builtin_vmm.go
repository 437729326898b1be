//go:build !no_builtin_vmm

package hostcheck

// builtinVMMCompiled says whether this build includes the built-in VMM;
// the no_builtin_vmm tag leaves it out (DESIGN decision 3).
const builtinVMMCompiled = true
