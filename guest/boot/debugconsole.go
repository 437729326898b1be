package boot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/joeyrt/joey/guest/channel"
)

// DebugConsoleMarker exists in images built with --debug-console; without it
// the agent never starts a shell, whatever the command line says.
const DebugConsoleMarker = "/etc/joey/debug-console"

// RunDebugConsole serves a busybox shell on the virtio-serial port named
// port, starting a new one whenever the previous exits, until ctx ends. The
// shell runs as a child of the agent, so the reaper collects it; its exit
// status is not needed.
func RunDebugConsole(ctx context.Context, port string, start StartFunc) error {
	if _, err := os.Stat(DebugConsoleMarker); err != nil {
		return fmt.Errorf("debug console requested but the image was built without --debug-console")
	}
	dev, err := waitPort(ctx, port)
	if err != nil {
		return err
	}
	go func() {
		for ctx.Err() == nil {
			f, err := os.OpenFile(dev, os.O_RDWR, 0)
			if err != nil {
				log.G(ctx).WithError(err).Warn("debug console: open port")
				return
			}
			cmd := exec.Command("/bin/busybox", "sh", "-i")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, f
			cmd.Env = []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/", "PS1=joey-debug# "}
			cmd.Dir = "/"
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			exited, err := start(cmd)
			f.Close()
			if err != nil {
				log.G(ctx).WithError(err).Warn("debug console: start shell")
				return
			}
			<-exited
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return nil
}

// StartFunc starts cmd and returns a channel that yields its exit status.
// The agent passes its reaper's, so that one wait loop sees every child.
type StartFunc func(cmd *exec.Cmd) (<-chan int, error)

func waitPort(ctx context.Context, name string) (string, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		dev, err := channel.FindPort("/sys/class/virtio-ports", "/dev", name)
		if err == nil {
			return dev, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
