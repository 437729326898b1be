package hostcheck

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/joeyrt/joey/internal/kvmdetect"
)

const (
	qemuBinary     = "qemu-system-x86_64"
	installQEMU    = "apt-get install qemu-system-x86"
	hardwareKVMFix = "for KVM speed, run on a host with hardware virtualization (kvm_intel or kvm_amd loaded, VT-x/AMD-V enabled in the firmware)"
)

type kvmResult struct {
	kvmdetect.Result
	devExists bool // /dev/kvm is there, whether or not it is usable
}

func probeKVM(h Host) kvmResult {
	_, err := os.Stat(filepath.Join(h.Root, "dev/kvm"))
	return kvmResult{Result: kvmdetect.DetectAt(h.Root), devExists: err == nil}
}

func (k kvmResult) check() Check {
	c := Check{Name: "kvm", Value: string(k.Kind), Detail: string(k.Kind) + ": " + k.Reason}
	switch k.Kind {
	case kvmdetect.Hardware:
		c.Status = OK
	case kvmdetect.PVM:
		c.Status = Unavailable
		c.Detail += "; QEMU emulates with TCG instead"
		c.Fix = hardwareKVMFix
	default:
		c.Status = Unavailable
		c.Detail += "; QEMU emulates with TCG instead"
		c.Fix = "modprobe kvm_intel or kvm_amd, or enable VT-x/AMD-V in the firmware"
		if k.devExists {
			c.Fix = "make /dev/kvm usable: run as root or join its group (kvm), and load kvm_intel or kvm_amd"
		}
	}
	return c
}

// qemuResult is what running the QEMU binary told us.
type qemuResult struct {
	path    string
	version string
	err     error           // set if the binary was found but does not run
	accels  map[string]bool // from `-accel help`
}

func (q qemuResult) usable() bool { return q.path != "" && q.err == nil }

var qemuVersionRE = regexp.MustCompile(`QEMU emulator version (\S+)`)

func probeQEMU(ctx context.Context, h Host) qemuResult {
	path := lookPath(h.PATH, qemuBinary)
	if path == "" {
		return qemuResult{}
	}
	q := qemuResult{path: path, accels: map[string]bool{}}
	out, err := run(ctx, path, "--version")
	if err != nil {
		q.err = err
		return q
	}
	m := qemuVersionRE.FindSubmatch(out)
	if m == nil {
		q.err = fmt.Errorf("%s --version printed no \"QEMU emulator version\": %q", path, firstLine(out))
		return q
	}
	q.version = string(m[1])
	out, err = run(ctx, path, "-accel", "help")
	if err != nil {
		q.err = err
		return q
	}
	// The first line is a heading; each further line names an accelerator.
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if w := strings.TrimSpace(sc.Text()); w != "" && !strings.Contains(w, " ") {
			q.accels[w] = true
		}
	}
	return q
}

func (q qemuResult) check() Check {
	c := Check{Name: "qemu", Required: true}
	switch {
	case q.path == "":
		c.Status = Missing
		c.Detail = qemuBinary + " not found on PATH"
		c.Fix = installQEMU
	case q.err != nil:
		c.Status = Missing
		c.Detail = fmt.Sprintf("%s does not run: %v", q.path, q.err)
		c.Fix = "reinstall it: apt-get install --reinstall qemu-system-x86"
	default:
		c.Status = OK
		c.Value = q.version
		c.Detail = fmt.Sprintf("%s (QEMU %s)", q.path, q.version)
	}
	return c
}

func (q qemuResult) tcgCheck() Check {
	c := Check{Name: "tcg"}
	switch {
	case !q.usable():
		c.Status = Unavailable
		c.Detail = "no usable QEMU, so no TCG"
		c.Fix = installQEMU
	case !q.accels["tcg"]:
		c.Status = Unavailable
		c.Detail = q.path + " was built without TCG"
		c.Fix = "install Debian's qemu-system-x86, which has TCG"
	default:
		c.Status = OK
		c.Value = "tcg"
		c.Detail = "QEMU can emulate the CPU in software: slower than KVM, works on every host"
	}
	return c
}

// accelerator is the choice DESIGN decision 10 describes for the default
// configuration (the qemu hypervisor with an automatic accelerator): KVM
// only when it is hardware KVM, else TCG, and say why.
func accelerator(k kvmResult, q qemuResult) Check {
	c := Check{Name: "accelerator", Required: true}
	if !q.usable() {
		c.Status = Missing
		c.Detail = "the default configuration runs VMs with QEMU, and there is no usable QEMU"
		c.Fix = installQEMU
		return c
	}
	switch {
	case k.BootsStockKernel() && q.accels["kvm"]:
		c.Status, c.Value = OK, "kvm"
		c.Detail = "QEMU uses KVM: " + k.Reason
	case q.accels["tcg"]:
		c.Status, c.Value = Warning, "tcg"
		c.Fix = hardwareKVMFix
		switch {
		case k.Kind == kvmdetect.PVM:
			c.Detail = "QEMU emulates with TCG, several times slower than KVM: " + k.Reason + " (it hangs entering protected mode)"
		case k.BootsStockKernel():
			c.Detail = "QEMU emulates with TCG: " + q.path + " was built without KVM support although " + k.Reason
			c.Fix = installQEMU + " (Debian's build has KVM)"
		default:
			c.Detail = "QEMU emulates with TCG, several times slower than KVM: no KVM here (" + k.Reason + ")"
		}
	default:
		c.Status = Missing
		c.Detail = q.path + " offers neither a usable KVM nor TCG"
		c.Fix = installQEMU
	}
	return c
}

func builtinVMM(k kvmResult) Check {
	c := Check{Name: "builtin-vmm"}
	switch {
	case !builtinVMMCompiled:
		c.Status = Unavailable
		c.Detail = "left out of this build (-tags no_builtin_vmm); the qemu hypervisor works without it"
		c.Fix = "rebuild joey without the no_builtin_vmm tag"
	case k.BootsStockKernel():
		c.Status, c.Value = OK, "kvm"
		c.Detail = "the in-process VMM can boot the guest kernel: " + k.Reason
	default:
		c.Status = Unavailable
		c.Detail = "needs hardware KVM to boot a stock kernel, and this host has " + string(k.Kind) + ": " + k.Reason + "; use the qemu hypervisor (the default)"
		c.Fix = hardwareKVMFix
	}
	return c
}
