package service

import (
	"context"
	"fmt"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// configPathFrom returns the joey configuration file named in a create
// request's runtime options. containerd passes the options of the
// container's runtime: `ctr run --runtime-config-path` and CRI's
// `[...runtimes.joey.options] ConfigPath` both give a runtimeoptions.v1
// Options; no options means "" (joey looks for its configuration itself).
func configPathFrom(ctx context.Context, opts *anypb.Any) (string, error) {
	if opts == nil || opts.GetTypeUrl() == "" {
		return "", nil
	}
	v, err := typeurl.UnmarshalAny(opts)
	if err != nil {
		return "", fmt.Errorf("runtime options of type %s: %v: %w", opts.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	switch o := v.(type) {
	case *runtimeoptions.Options:
		return o.ConfigPath, nil
	case *runcoptions.Options:
		// A runtime entry copied from runc's keeps runc's options, which
		// mean nothing to a VM; they are not worth failing the container.
		log.G(ctx).WithField("options", o.String()).Warn("ignoring runc options given to joey")
		return "", nil
	default:
		return "", fmt.Errorf("runtime options of type %s are not joey's: give runtimeoptions.v1.Options (ConfigPath) or none: %w",
			opts.GetTypeUrl(), errdefs.ErrInvalidArgument)
	}
}
