// Command containerd-shim-joey-v2 is joey's containerd shim: runtime type
// io.containerd.joey.v2, one process per pod, each pod in its own VM.
package main

import (
	"context"

	cshim "github.com/containerd/containerd/v2/pkg/shim"

	"github.com/joeyrt/joey/runtime/virt"
	_ "github.com/joeyrt/joey/service/plugin"
	"github.com/joeyrt/joey/shim"
)

func main() {
	cshim.RunShim(context.Background(), shim.New(shim.RuntimeName, virt.Name), shim.BinaryOpts)
}
