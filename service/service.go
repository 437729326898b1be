// Package service is joey's containerd task service (task API v3 over
// ttRPC): it turns each shim request into calls on a runtime.Sandbox and its
// Containers, and publishes the task events containerd expects. One shim
// process serves one sandbox: the first Create boots it, later Creates add
// containers to it, and the sandbox stops when its last container is
// deleted.
//
// Errors stay Go errors wrapping errdefs sentinels everywhere in this
// package; api.go is the one place they become ttRPC status codes.
package service

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/runtime"
)

// DefaultHandler is the runtime handler the shim runs sandboxes with.
const DefaultHandler = "virt"

// stopTimeout bounds stopping the sandbox once its last container is gone:
// the stop runs detached from the request, which containerd may cancel.
const stopTimeout = 30 * time.Second

// Options are what a Service needs from the shim around it.
type Options struct {
	Handler runtime.Handler
	// Publisher sends events to containerd. If it is an io.Closer, it is
	// closed when the shim shuts down, after the last event went out.
	Publisher events.Publisher
	Shutdown  shutdown.Service
	// Namespace is the containerd namespace the shim serves.
	Namespace string
	// LoadConfig reads joey's configuration from a path ("" lets it look
	// for one). Default: config.Load.
	LoadConfig func(path string) (*config.Config, error)
	// Prepare, if set, gets the configuration a sandbox is about to be
	// created with: the shim registers its hypervisor drivers from it,
	// since their settings live in that file.
	Prepare func(*config.Config) error
}

// Service implements the task API for one sandbox.
type Service struct {
	handler    runtime.Handler
	namespace  string
	loadConfig func(string) (*config.Config, error)
	prepare    func(*config.Config) error
	shutdown   shutdown.Service
	events     *eventQueue
	// stop is closed when the shim shuts down; it ends the goroutines that
	// wait for process exits.
	stop     chan struct{}
	stopOnce sync.Once

	// createMu serializes Create and the sandbox's stop, so a container
	// never joins a sandbox that is going away and two Creates never both
	// boot one.
	createMu sync.Mutex

	mu         sync.Mutex
	sandbox    runtime.Sandbox       // guarded by mu; nil before the first Create and after the stop
	sandboxID  string                // guarded by mu
	pid        int                   // guarded by mu; the sandbox's task pid
	containers map[string]*container // guarded by mu
}

// New returns a Service. ctx carries the logger and the namespace events are
// published in; it must live as long as the shim.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Handler == nil || opts.Publisher == nil || opts.Shutdown == nil {
		return nil, fmt.Errorf("task service: handler, publisher and shutdown service are required: %w", errdefs.ErrInvalidArgument)
	}
	if opts.Namespace == "" {
		return nil, fmt.Errorf("task service: namespace is required: %w", errdefs.ErrInvalidArgument)
	}
	s := &Service{
		handler:    opts.Handler,
		namespace:  opts.Namespace,
		loadConfig: opts.LoadConfig,
		prepare:    opts.Prepare,
		shutdown:   opts.Shutdown,
		events:     newEventQueue(),
		stop:       make(chan struct{}),
		containers: map[string]*container{},
	}
	if s.loadConfig == nil {
		s.loadConfig = config.Load
	}
	go s.events.run(context.WithoutCancel(ctx), opts.Publisher)
	opts.Shutdown.RegisterCallback(func(sctx context.Context) error {
		// A shim told to go (Shutdown with no containers left, or SIGTERM)
		// must not leave a VM running without anyone to stop it.
		err := s.stopSandbox(sctx)
		s.stopOnce.Do(func() { close(s.stop) })
		s.events.close()
		select {
		case <-s.events.drained:
		case <-sctx.Done():
			log.G(ctx).Warn("shim shutdown: events still queued when time ran out")
		}
		if c, ok := opts.Publisher.(io.Closer); ok {
			if cerr := c.Close(); cerr != nil {
				log.G(ctx).WithError(cerr).Warn("close event publisher")
			}
		}
		return err
	})
	return s, nil
}

// detach returns a context for work that outlives the request that started
// it (waiting for a process to exit): it keeps the request's values and ends
// when the shim shuts down.
func (s *Service) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// container returns the container with id.
func (s *Service) container(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// process returns container id's process execID.
func (s *Service) process(id, execID string) (*container, *process, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.process(execID)
	if err != nil {
		return nil, nil, err
	}
	return c, p, nil
}

// taskPid is the pid containerd sees for every task: the VMM's.
func (s *Service) taskPid() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint32(s.pid)
}

// stopSandbox shuts the sandbox down once no container is left in it. It
// runs detached from ctx's cancellation, bounded by stopTimeout.
func (s *Service) stopSandbox(ctx context.Context) error {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	s.mu.Lock()
	sb, left := s.sandbox, len(s.containers)
	s.mu.Unlock()
	if sb == nil {
		return nil
	}
	if left > 0 {
		log.G(ctx).WithField("containers", left).Warn("stopping sandbox with containers left in it")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	if err := sb.Shutdown(ctx); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", sb.ID(), err)
	}
	s.mu.Lock()
	if s.sandbox == sb {
		s.sandbox = nil
	}
	s.mu.Unlock()
	log.G(ctx).WithField("sandbox", sb.ID()).Info("sandbox stopped")
	return nil
}

// handleSandboxEvent receives what the sandbox reports on its own. It must
// not block: the sandbox calls it from its own goroutines.
func (s *Service) handleSandboxEvent(ctx context.Context, ev runtime.Event) {
	switch ev.Kind {
	case runtime.EventOOM:
		s.events.push(oomEvent(ev.ContainerID))
	case runtime.EventVMExited:
		log.G(ctx).WithError(ev.Err).Error("the sandbox's VM exited")
		go s.vmExited(ctx)
	default:
		log.G(ctx).WithField("kind", ev.Kind).Warn("unknown sandbox event")
	}
}
