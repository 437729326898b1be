//go:build tools

// Package tools pins the libraries joey is built on, so go.mod names them
// before every package that uses them exists.
package tools

import (
	_ "github.com/containerd/containerd/api/runtime/task/v3"
	_ "github.com/containerd/containerd/v2/core/runtime/v2"
	_ "github.com/containerd/containerd/v2/pkg/shim"
	_ "github.com/containerd/errdefs"
	_ "github.com/containerd/log"
	_ "github.com/containerd/ttrpc"
	_ "github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runtime-spec/specs-go"
	_ "github.com/pelletier/go-toml/v2"
	_ "github.com/vishvananda/netlink"
	_ "golang.org/x/sys/unix"
	_ "google.golang.org/protobuf/proto"
)
