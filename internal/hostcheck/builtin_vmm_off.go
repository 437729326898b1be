//go:build no_builtin_vmm

package hostcheck

const builtinVMMCompiled = false
