// Package volume brings a container's OCI bind mounts into the sandbox's
// share: each bound file or directory is bound again under the container's
// directory of the share, and the guest's spec binds it from there. Files
// (/etc/hosts, /etc/resolv.conf, /etc/hostname, /dev/termination-log from a
// CRI or runc bundle) travel exactly like directories, so a container sees
// what runc would have shown it, updates of a rw bind included.
//
// Mounts the guest makes itself (tmpfs, proc, sysfs, mqueue, devpts, cgroup)
// stay as they are. A bind of /dev/shm is special: the pod's containers share
// it on a host, so it becomes a bind of a guest directory the whole sandbox
// shares (Options.GuestShm). Host device nodes cannot cross into the VM and
// are refused.
package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/resource/hostmount"
)

// Options say where the volumes of one container go.
type Options struct {
	// Bundle resolves relative bind sources.
	Bundle string
	// HostDir is the container's volume directory on the share's writable
	// side; it is created when missing. GuestDir is the same directory as
	// the guest sees it.
	HostDir  string
	GuestDir string
	// GuestShm is the guest directory that replaces binds of /dev/shm; ""
	// gives each such container a private tmpfs instead.
	GuestShm string
}

// Share binds every bind mount of mounts into opts.HostDir/<n>, n being the
// mount's index in the spec, and returns the guest's mounts: sources
// rewritten to opts.GuestDir/<n>, everything else as it was. Each mount
// point is recorded before it is mounted. It is all-or-nothing: on error the
// binds made so far are undone.
func Share(ctx context.Context, mounts []specs.Mount, opts Options, record hostmount.Recorder) (_ []specs.Mount, retErr error) {
	if opts.HostDir == "" || opts.GuestDir == "" {
		return nil, errors.New("share volumes: HostDir and GuestDir must be set")
	}
	var made []string
	defer func() {
		if retErr != nil {
			if err := hostmount.UnmountAll(context.WithoutCancel(ctx), made); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	guest := make([]specs.Mount, 0, len(mounts))
	for i, m := range mounts {
		m.Options = slices.Clone(m.Options)
		if !IsBind(m) {
			guest = append(guest, m)
			continue
		}
		if path.Clean(m.Destination) == "/dev/shm" {
			guest = append(guest, shm(ctx, m, opts.GuestShm))
			continue
		}
		name := strconv.Itoa(i)
		target := filepath.Join(opts.HostDir, name)
		if len(made) == 0 {
			if err := os.MkdirAll(opts.HostDir, 0o711); err != nil {
				return nil, fmt.Errorf("share volumes: %w", err)
			}
		}
		if err := bind(ctx, m, opts.Bundle, target, record); err != nil {
			return nil, fmt.Errorf("share volume %d (%s): %w", i, m.Destination, err)
		}
		made = append(made, target)
		m.Source = path.Join(opts.GuestDir, name)
		guest = append(guest, m)
	}
	return guest, nil
}

func bind(ctx context.Context, m specs.Mount, bundle, target string, record hostmount.Recorder) error {
	source := m.Source
	if source == "" {
		return errors.New("bind mount without source: set mounts[].source")
	}
	if !filepath.IsAbs(source) {
		if bundle == "" {
			return fmt.Errorf("source %q is relative and there is no bundle to resolve it against", source)
		}
		source = filepath.Join(bundle, source)
	}
	fi, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if fi.Mode()&(os.ModeDevice|os.ModeCharDevice) != 0 {
		return fmt.Errorf("source %s is a host device node, which the VM cannot reach (give the guest its own device instead): %w", source, errdefs.ErrNotImplemented)
	}
	if _, err := hostmount.MakeTarget(source, target); err != nil {
		return err
	}
	if err := record(ctx, target); err != nil {
		return fmt.Errorf("record %s: %w", target, err)
	}
	return hostmount.Bind(source, target, IsRecursive(m), IsReadOnly(m))
}

// shm turns a bind of /dev/shm into what the guest can share.
func shm(ctx context.Context, m specs.Mount, guestShm string) specs.Mount {
	if guestShm != "" {
		log.G(ctx).WithField("source", m.Source).Debug("/dev/shm bind: using the sandbox's shared guest directory")
		m.Source = guestShm
		return m
	}
	log.G(ctx).WithField("source", m.Source).Debug("/dev/shm bind: a private tmpfs in the guest")
	return specs.Mount{
		Destination: m.Destination,
		Type:        "tmpfs",
		Source:      "shm",
		Options:     []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"},
	}
}

// IsBind reports whether m is a bind mount: type "bind" or "rbind", or
// any type with a bind or rbind option (runc's rule).
func IsBind(m specs.Mount) bool {
	return m.Type == "bind" || m.Type == "rbind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// IsRecursive reports whether a bind takes the mounts below its source.
func IsRecursive(m specs.Mount) bool {
	return m.Type == "rbind" || slices.Contains(m.Options, "rbind")
}

// IsReadOnly reports whether the last of "ro" and "rw" among m's options
// is "ro", as mount(8) reads them.
func IsReadOnly(m specs.Mount) bool {
	ro := false
	for _, o := range m.Options {
		switch o {
		case "ro":
			ro = true
		case "rw":
			ro = false
		}
	}
	return ro
}
