// Package builtinvm proves the built-in VMM runs joey's own guest image:
// the agent answers over a virtio-console port whose host side is an
// in-process connection, the devices interrupt through PCI MSI-X, the
// virtio-rng feeds the guest's hwrng, and the serial console is captured.
// It needs real KVM, so the outer test re-runs this test binary inside the
// nested-KVM harness's L1 guest.
package builtinvm

import (
	"context"
	"net"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/joeyrt/joey/agent"
	"github.com/joeyrt/joey/agent/protocol"
	"github.com/joeyrt/joey/test/guestimage"
	"github.com/joeyrt/joey/test/nested/builtintest"
	"github.com/joeyrt/joey/vmm/vm"
)

func TestGuestImageBootsInBuiltinVMMWithAgentOverInProcessPort(t *testing.T) {
	builtintest.Run(t, "github.com/joeyrt/joey/test/nested/builtinvm", 240*time.Second, inner)
}

// msiLine is one /proc/interrupts row of a virtio device's message
// interrupt. Linux 6.1 names the chip PCI-MSI for MSI and MSI-X alike
// (later kernels say PCI-MSIX-<device>); msi_irqs/N in sysfs tells which.
var msiLine = regexp.MustCompile(`PCI-MSI(?:X-0000:00:\d\d\.0)?\s+\d+-edge\s+(virtio\d+)-(\S+)`)

// msiMode is the shell's report of one vector's mode from sysfs.
var msiMode = regexp.MustCompile(`MODE /sys/bus/pci/devices/0000:00:(\d\d)\.0/msi_irqs/(\d+) (\w+)`)

func inner(t *testing.T, img string) {
	before := runtime.NumGoroutine()
	var c *agent.Client
	v, console := builtintest.Boot(t, img, "agent", func(cfg *vm.Config) { cfg.IOEventFDs = true }, func(v *vm.VM) error {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		go func() {
			select {
			case <-v.Done():
				cancel()
			case <-ctx.Done():
			}
		}()
		// What the runtime does: agent.Connect's first health check waits
		// for the boot on one stream.
		var err error
		c, err = agent.Connect(ctx, func(context.Context) (net.Conn, error) { return v.Port(builtintest.AgentPort) })
		return err
	})
	defer func() {
		if v != nil {
			v.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	details, err := c.GuestDetails(ctx, &protocol.GuestDetailsRequest{})
	if err != nil {
		t.Fatalf("GuestDetails over the in-process port: %v", err)
	}
	t.Logf("guest: %v", details)

	conn, err := v.Port(builtintest.ShellPort)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := guestimage.NewShell(conn, v.Done()).Run("cat /proc/interrupts; for f in /sys/bus/pci/devices/*/msi_irqs/*; do echo MODE $f $(cat $f); done; "+
		"echo RNG=$(cat /sys/class/misc/hw_random/rng_current); echo NPROC=$(nproc)", time.Minute)
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	devices := map[string]map[string]bool{}
	for _, m := range msiLine.FindAllStringSubmatch(out, -1) {
		if devices[m[1]] == nil {
			devices[m[1]] = map[string]bool{}
		}
		devices[m[1]][m[2]] = true
	}
	modes := msiMode.FindAllStringSubmatch(out, -1)
	msix := 0
	for _, m := range modes {
		if m[3] != "msix" {
			t.Fatalf("vector %s of device 00:%s.0 is in mode %s, want msix:\n%s", m[2], m[1], m[3], out)
		}
		msix++
	}
	if msix < 8 {
		t.Fatalf("sysfs shows %d MSI-X vectors, want the console's 6 and the rng's 2:\n%s", msix, out)
	}
	// virtio0 is the console (config, control and two ports: rx/tx each),
	// virtio1 the rng (config + its request queue).
	if len(devices) < 2 || !devices["virtio0"]["config"] || !devices["virtio1"]["config"] || len(devices["virtio0"]) < 3 || len(devices["virtio1"]) < 2 {
		t.Fatalf("/proc/interrupts does not show MSI-X vectors for both virtio devices (%v):\n%s", devices, out)
	}
	if !strings.Contains(out, "RNG=virtio_rng.0") {
		t.Fatalf("the guest's hwrng is not virtio-rng:\n%s", out)
	}
	if !strings.Contains(out, "NPROC=1") {
		t.Fatalf("the guest does not see its one CPU:\n%s", out)
	}
	t.Logf("MSI-X vectors per device: %v", devices)

	// The agent still answers after the debug shell used the other port.
	if _, err := c.Check(ctx, &protocol.CheckRequest{}); err != nil {
		t.Fatalf("Check after the shell: %v", err)
	}
	// Every queue kick of the guest's virtio-pci driver (a 2-byte write
	// at the queue's notify address) was taken by KVM through an
	// ioeventfd: none exited to the VMM.
	if fd, exit := v.Kicks(); fd == 0 || exit != 0 {
		t.Errorf("queue kicks: %d through ioeventfds, %d as MMIO exits; want all through ioeventfds", fd, exit)
	} else {
		t.Logf("queue kicks: %d, all through ioeventfds", fd)
	}
	c.Close()
	builtintest.Shutdown(t, &v, before)
	log := console.String()
	if !strings.Contains(log, "Linux version") || !strings.Contains(log, "virtio") {
		t.Fatalf("serial console not captured:\n%s", log)
	}
}
