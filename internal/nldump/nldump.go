// Package nldump repeats netlink dumps the kernel marks as interrupted by a
// concurrent change, so callers never act on a half-consistent view. The
// guest's network configuration and the host's pod network scan both dump.
package nldump

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// retries bounds how often an interrupted dump is repeated.
const retries = 5

// Do runs f, again while it reports netlink.ErrDumpInterrupted, at most
// retries times; it returns the last result.
func Do[T any](f func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range retries {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
