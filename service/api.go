package service

import (
	"context"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// API is the Service as containerd's ttRPC task service. It is the one
// place where errors become status codes: errdefs.ErrNotFound becomes
// NotFound, ErrFailedPrecondition FailedPrecondition, ErrNotImplemented
// Unimplemented, and so on.
type API struct {
	s *Service
}

var _ taskAPI.TTRPCTaskService = (*API)(nil)

// API returns the ttRPC face of s.
func (s *Service) API() *API { return &API{s: s} }

// RegisterTTRPC registers the task service on a ttRPC server; the shim
// library calls it for every plugin that has it.
func (a *API) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, a)
	return nil
}

var empty = &emptypb.Empty{}

// reply maps err to a status code and returns resp only without error.
func reply[T any](resp *T, err error) (*T, error) {
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return resp, nil
}

func done(err error) (*emptypb.Empty, error) { return reply(empty, err) }

// State serves the task API's State.
func (a *API) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	return reply(a.s.state(ctx, r))
}

// Create serves the task API's Create.
func (a *API) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	return reply(a.s.create(ctx, r))
}

// Start serves the task API's Start.
func (a *API) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	return reply(a.s.start(ctx, r))
}

// Delete serves the task API's Delete.
func (a *API) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	return reply(a.s.delete(ctx, r))
}

// Pids serves the task API's Pids.
func (a *API) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	return reply(a.s.pids(ctx, r))
}

// Pause serves the task API's Pause.
func (a *API) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptypb.Empty, error) {
	return done(a.s.pause(ctx, r))
}

// Resume serves the task API's Resume.
func (a *API) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptypb.Empty, error) {
	return done(a.s.resume(ctx, r))
}

// Checkpoint serves the task API's Checkpoint.
func (a *API) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return done(a.s.checkpoint(ctx, r))
}

// Kill serves the task API's Kill.
func (a *API) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptypb.Empty, error) {
	return done(a.s.kill(ctx, r))
}

// Exec serves the task API's Exec.
func (a *API) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptypb.Empty, error) {
	return done(a.s.exec(ctx, r))
}

// ResizePty serves the task API's ResizePty.
func (a *API) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptypb.Empty, error) {
	return done(a.s.resizePty(ctx, r))
}

// CloseIO serves the task API's CloseIO.
func (a *API) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptypb.Empty, error) {
	return done(a.s.closeIO(ctx, r))
}

// Update serves the task API's Update.
func (a *API) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptypb.Empty, error) {
	return done(a.s.update(ctx, r))
}

// Wait serves the task API's Wait.
func (a *API) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	return reply(a.s.wait(ctx, r))
}

// Stats serves the task API's Stats.
func (a *API) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	return reply(a.s.stats(ctx, r))
}

// Connect serves the task API's Connect.
func (a *API) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	return reply(a.s.connect(ctx, r))
}

// Shutdown serves the task API's Shutdown.
func (a *API) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptypb.Empty, error) {
	return done(a.s.shutdownShim(ctx, r))
}
