// Package version holds the build's version, stamped by the Makefile with
// -ldflags "-X github.com/joeyrt/joey/internal/version.Version=...".
package version

// Version is the joey release (or git describe output) this binary was built from.
var Version = "dev"
