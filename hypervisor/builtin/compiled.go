//go:build !no_builtin_vmm

package builtin

// Compiled says the built-in VMM is part of this build.
const Compiled = true
