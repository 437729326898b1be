// Package plugin registers joey's task service with containerd's shim
// library, which builds the shim's ttRPC server from registered plugins.
// The shim's main imports it for that side effect.
package plugin

import (
	"fmt"

	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

	"github.com/joeyrt/joey/hypervisor/drivers"
	"github.com/joeyrt/joey/runtime"
	"github.com/joeyrt/joey/service"
)

func init() {
	registry.Register(&plugin.Registration{
		Type: plugins.TTRPCPlugin,
		ID:   "task",
		// The shim library registers both: the publisher that forwards
		// events to containerd and the service that ends the process.
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (any, error) {
			pub, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, fmt.Errorf("task service: %w", err)
			}
			sd, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, fmt.Errorf("task service: %w", err)
			}
			ns, err := namespaces.NamespaceRequired(ic.Context)
			if err != nil {
				return nil, fmt.Errorf("task service: %w", err)
			}
			h, err := runtime.Get(service.DefaultHandler)
			if err != nil {
				return nil, fmt.Errorf("task service: %w", err)
			}
			s, err := service.New(ic.Context, service.Options{
				Handler:   h,
				Publisher: pub.(events.Publisher),
				Shutdown:  sd.(shutdown.Service),
				Namespace: ns,
				Prepare:   drivers.Register,
			})
			if err != nil {
				return nil, err
			}
			return s.API(), nil
		},
	})
}
