package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/log"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/hypervisor/drivers"
	"github.com/joeyrt/joey/persist"
	"github.com/joeyrt/joey/runtime"
	_ "github.com/joeyrt/joey/runtime/virt" // the "virt" handler
)

// runNamespace groups sandboxes started by `joey run` in the state directory,
// apart from containerd's namespaces.
const runNamespace = "joey-run"

func init() {
	register("run", "run a container in a VM without containerd (like runc run)", runRun)
}

type runOptions struct {
	bundle, rootfs, id, configPath, hypervisor, cwd, user string
	env                                                   multiFlag
	tty, readOnly                                         bool
	args                                                  []string
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runRun(ctx context.Context, args []string) error {
	var o runOptions
	fs := flag.NewFlagSet("joey run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: joey run [flags] (--bundle DIR | --rootfs DIR COMMAND [ARG...])\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.bundle, "bundle", "", "OCI bundle directory (config.json + rootfs)")
	fs.StringVar(&o.rootfs, "rootfs", "", "root filesystem directory; the command comes from the arguments")
	fs.StringVar(&o.id, "id", "", "container ID (default: generated)")
	fs.StringVar(&o.configPath, "config", "", "joey config file (default: $JOEY_CONFIG or /etc/joey/config.toml)")
	fs.StringVar(&o.hypervisor, "hypervisor", "", "hypervisor driver, overriding runtime.hypervisor of the config")
	fs.BoolVar(&o.tty, "t", false, "allocate a terminal (with --rootfs)")
	fs.BoolVar(&o.readOnly, "read-only", false, "mount the rootfs read-only (with --rootfs)")
	fs.StringVar(&o.cwd, "cwd", "/", "working directory (with --rootfs)")
	fs.StringVar(&o.user, "user", "", "UID[:GID] to run as (with --rootfs)")
	fs.Var(&o.env, "env", "KEY=VALUE added to the environment (with --rootfs; repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.args = fs.Args()
	spec, bundle, err := o.spec()
	if err != nil {
		return err
	}
	cfg, err := config.Load(o.configPath)
	if err != nil {
		return err
	}
	if o.hypervisor != "" {
		cfg.Runtime.Hypervisor = o.hypervisor
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("--hypervisor: %w", err)
		}
	}
	if o.id == "" {
		o.id = fmt.Sprintf("run-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	}
	if err := persist.ValidateID(o.id); err != nil {
		return fmt.Errorf("--id: %w", err)
	}
	code, err := runContainer(ctx, cfg, o.id, bundle, spec)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code: int(code)}
	}
	return nil
}

// spec reads the bundle's config.json, or makes a runc-style default spec
// for --rootfs and a command.
func (o *runOptions) spec() (*specs.Spec, string, error) {
	switch {
	case o.bundle != "" && o.rootfs != "":
		return nil, "", errors.New("--bundle and --rootfs exclude each other: give one")
	case o.bundle != "":
		if len(o.args) > 0 {
			return nil, "", fmt.Errorf("--bundle takes its command from config.json; drop the arguments %q", o.args)
		}
		bundle, err := filepath.Abs(o.bundle)
		if err != nil {
			return nil, "", err
		}
		b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
		if err != nil {
			return nil, "", fmt.Errorf("--bundle: %w", err)
		}
		var spec specs.Spec
		if err := json.Unmarshal(b, &spec); err != nil {
			return nil, "", fmt.Errorf("--bundle: %s/config.json: %w", bundle, err)
		}
		if spec.Root == nil || spec.Process == nil {
			return nil, "", fmt.Errorf("--bundle: %s/config.json needs root and process", bundle)
		}
		if !filepath.IsAbs(spec.Root.Path) {
			spec.Root.Path = filepath.Join(bundle, spec.Root.Path)
		}
		return &spec, bundle, nil
	case o.rootfs != "":
		if len(o.args) == 0 {
			return nil, "", errors.New("--rootfs needs a command to run after the flags")
		}
		rootfs, err := filepath.Abs(o.rootfs)
		if err != nil {
			return nil, "", err
		}
		if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
			return nil, "", fmt.Errorf("--rootfs %s is not a directory", o.rootfs)
		}
		spec := specconv.Example()
		spec.Root = &specs.Root{Path: rootfs, Readonly: o.readOnly}
		spec.Process.Args = o.args
		spec.Process.Terminal = o.tty
		spec.Process.Cwd = o.cwd
		spec.Process.Env = append(spec.Process.Env, o.env...)
		spec.Hostname = "joey"
		if o.user != "" {
			u, err := parseUser(o.user)
			if err != nil {
				return nil, "", err
			}
			spec.Process.User = u
		}
		return spec, "", nil
	}
	return nil, "", errors.New("give --bundle DIR, or --rootfs DIR and a command")
}

// runContainer runs one container in its own sandbox with this process's
// stdio, the way the shim does for containerd, and returns its exit status.
func runContainer(ctx context.Context, cfg *config.Config, id, bundle string, spec *specs.Spec) (code uint32, retErr error) {
	if err := drivers.Register(cfg); err != nil {
		return 0, err
	}
	h, err := runtime.Get("virt")
	if err != nil {
		return 0, err
	}
	// The sandbox must outlive a ^C so it can be shut down cleanly.
	bg := log.WithLogger(context.WithoutCancel(ctx), log.G(ctx))
	sb, err := h.CreateSandbox(ctx, runtime.SandboxConfig{
		ID: id, Namespace: runNamespace, Spec: spec, Bundle: bundle, Config: cfg,
		Events: func(ev runtime.Event) {
			if ev.Kind == runtime.EventOOM {
				fmt.Fprintf(os.Stderr, "joey run: container %s: process killed by the OOM killer\n", ev.ContainerID)
			}
		},
	})
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := sb.Shutdown(bg); err != nil && retErr == nil {
			retErr = err
		}
	}()

	stdio := runtime.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Terminal: spec.Process.Terminal}
	var con console.Console
	if stdio.Terminal {
		if c, err := console.ConsoleFromFile(os.Stdin); err == nil {
			con = c
			if err := con.SetRaw(); err != nil {
				return 0, fmt.Errorf("terminal raw mode: %w", err)
			}
			defer con.Reset()
		}
		stdio.Stderr = nil
	}
	c, err := sb.CreateContainer(ctx, runtime.ContainerConfig{ID: id, Bundle: bundle, Spec: spec, IO: stdio})
	if err != nil {
		return 0, err
	}
	if err := c.Start(ctx, ""); err != nil {
		return 0, err
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	resize := func() {
		if con != nil {
			if ws, err := con.Size(); err == nil {
				c.ResizePty(bg, "", uint32(ws.Width), uint32(ws.Height))
			}
		}
	}
	resize()
	done := make(chan struct{})
	var st runtime.ExitStatus
	var waitErr error
	go func() {
		st, waitErr = c.Wait(bg, "")
		close(done)
	}()
	for {
		select {
		case <-done:
			if waitErr != nil {
				return 0, waitErr
			}
			if _, err := c.Delete(bg, ""); err != nil {
				log.G(ctx).WithError(err).Warn("delete container")
			}
			return st.Code, nil
		case s := <-sigs:
			// Signals are the container's, as with runc: forward them.
			if s == syscall.SIGWINCH {
				resize()
				continue
			}
			if err := c.Kill(bg, "", s.(syscall.Signal), false); err != nil {
				log.G(ctx).WithError(err).Debugf("forward %v", s)
			}
		}
	}
}

// parseUser reads "UID" or "UID:GID"; a lone UID runs with GID = UID's
// number, as there is no passwd lookup on the host for a guest rootfs.
func parseUser(s string) (specs.User, error) {
	us, gs, hasGID := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(us, 10, 32)
	if err != nil {
		return specs.User{}, fmt.Errorf("--user %q: want UID or UID:GID (numbers)", s)
	}
	gid := uid
	if hasGID {
		if gid, err = strconv.ParseUint(gs, 10, 32); err != nil {
			return specs.User{}, fmt.Errorf("--user %q: want UID or UID:GID (numbers)", s)
		}
	}
	return specs.User{UID: uint32(uid), GID: uint32(gid)}, nil
}
