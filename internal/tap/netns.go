package tap

import (
	"github.com/joeyrt/joey/internal/netnsexec"
)

// inNetNS runs fn inside the network namespace at path ("" = the process's
// own). Everything that must happen inside the namespace — opening
// /dev/net/tun (the TAP is made in the namespace of the opener) and creating
// netlink sockets — belongs in fn.
func inNetNS(path string, fn func() error) error { return netnsexec.Run(path, fn) }
