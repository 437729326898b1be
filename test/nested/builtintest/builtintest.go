// Package builtintest is what the nested tests of the built-in VMM that
// boot joey's debug guest image share: the outer half that re-runs a test
// in the harness's L1 guest, and an L2 boot that survives the flakiness of
// QEMU TCG's emulation of nested SVM. It is apart from package nested so
// that the harness's other users do not build the VMM.
package builtintest

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/test/guestimage"
	"github.com/joeyrt/joey/test/nested"
	"github.com/joeyrt/joey/vmm/machine"
	"github.com/joeyrt/joey/vmm/vm"
)

// The debug image's virtio-console ports: the agent's channel and the
// busybox shell (see guestimage.Shell).
const (
	AgentPort = "agent.0"
	ShellPort = "console.1"
)

const imageEnv = "JOEY_TEST_IMAGE"

// Run is the whole of a test that needs real KVM. Outside L1 it builds the
// debug image (guestimage.Debug decides when that is unavailable) and
// re-runs the calling test, pkg's t.Name(), in L1 within timeout (see
// nested.RunInner); in L1 it calls inner with the image's directory.
func Run(t *testing.T, pkg string, timeout time.Duration, inner func(t *testing.T, img string)) {
	t.Helper()
	if os.Getenv(nested.InsideEnv) == "1" {
		img := os.Getenv(imageEnv)
		if img == "" {
			t.Fatal(imageEnv + " not passed into L1")
		}
		inner(t, img)
		return
	}
	img := guestimage.Debug(t)
	nested.RunInner(t, pkg, "^"+regexp.QuoteMeta(t.Name())+"$",
		nested.Options{Env: []string{imageEnv + "=" + img}, Timeout: timeout})
}

// Boot boots the debug image at img in a VM and returns it running, with
// its serial console, once ready(v) returns nil. configure, when not nil,
// adds the test's devices; it is called for every attempt, since a VM owns
// what it is given (a TAP queue) and closes it with itself. waitFor names
// what ready waits for in the log ("agent"). ready may fail t itself when
// retrying cannot help; Boot then closes the VM.
//
// Under QEMU TCG's emulation of nested SVM about one L2 boot in eight dies
// or hangs at a random point (see test/nested/linuxboot), so a boot that is
// not ready is retried, at most twice; a third failure is reported with
// nested.ReportL2Death, so that RunInner tries a fresh L1, and fails t.
func Boot(t *testing.T, img, waitFor string, configure func(*vm.Config), ready func(v *vm.VM) error) (*vm.VM, *testutil.SyncBuffer) {
	t.Helper()
	// The VM of the current attempt, closed if t fails before it is
	// handed over.
	var pending *vm.VM
	defer func() {
		if pending != nil {
			pending.Close()
		}
	}()
	for attempt := 1; ; attempt++ {
		console := &testutil.SyncBuffer{}
		cfg := vm.Config{
			// One vCPU: an SMP L2 makes QEMU TCG's emulation of nested SVM
			// reset L1 far more often; linuxboot covers SMP.
			VCPUs: 1, MemoryMiB: 512,
			Kernel:  filepath.Join(img, "vmlinux"),
			Initrd:  filepath.Join(img, "initrd.img"),
			Cmdline: "panic=-1 reboot=t joey.channel=serial:" + AgentPort + " joey.debug_console=" + ShellPort,
			Console: console,
			Ports:   []string{AgentPort, ShellPort},
			RNG:     true,
		}
		if configure != nil {
			configure(&cfg)
		}
		v, err := vm.New(cfg)
		if err != nil {
			// A VM that was not made leaves its TAP queues to the caller.
			for _, n := range cfg.NICs {
				n.TAP.Close()
			}
			t.Fatal(err)
		}
		pending = v
		if err := v.Start(); err != nil {
			t.Fatal(err)
		}
		nested.CountL2Boot()
		start := time.Now()
		err = ready(v)
		if err == nil {
			t.Logf("%s answered %v after the vCPUs started", waitFor, time.Since(start).Round(time.Millisecond))
			pending = nil
			return v, console
		}
		end := v.Stop()
		v.Close()
		pending = nil
		if attempt == 3 {
			nested.ReportL2Death(end)
			t.Fatalf("%s did not answer: %v (VM %v); console:\n%s", waitFor, err, end, console.String())
		}
		t.Logf("attempt %d: %s did not answer (%v, VM %v); console tail:\n%s", attempt, waitFor, err, end, Tail(console.String(), 1500))
	}
}

// Shutdown stops and closes *v, then sets *v to nil so that the caller's
// deferred clean-up leaves it alone, and fails t unless the VM ran until
// Stop and the goroutine count is back to before (counted before Boot)
// within 5 s: every vCPU and device goroutine must end with the VM.
func Shutdown(t *testing.T, v **vm.VM, before int) {
	t.Helper()
	end := (*v).Stop()
	if err := (*v).Close(); err != nil {
		t.Fatal(err)
	}
	*v = nil
	if end.Reason != machine.Stopped {
		t.Fatalf("VM ended %v before Stop", end)
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before the VM, %d after it was closed:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// Tail is the last n bytes of a console log: what a failure needs to show
// of a boot without flooding the test log.
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
