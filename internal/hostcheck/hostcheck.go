// Package hostcheck finds out what a host gives joey — KVM or only TCG,
// QEMU, /dev/net/tun, vhost devices, virtiofsd, cgroups, containerd, the
// guest image, the built-in VMM — and what to install for what is missing.
// `joey check` prints its Report. Every probe reads files under Host.Root
// and runs binaries found on Host.PATH, so tests point it at a fake host.
package hostcheck

import (
	"context"
	"os"
)

// DefaultImageDir is where an installed guest image lives.
const DefaultImageDir = "/var/lib/joey/image"

// SchemaVersion is the "schema" of the JSON Report. It changes only if a
// field changes meaning or goes away, never when one is added.
const SchemaVersion = 1

// Status says how one check came out.
type Status string

const (
	// OK: present and usable.
	OK Status = "ok"
	// Missing: something the default configuration needs is absent or
	// broken, so joey cannot run a container; Fix says what to do.
	Missing Status = "missing"
	// Unavailable: an optional piece is absent or unusable on this host;
	// joey works without it, and Detail says what it uses instead.
	Unavailable Status = "unavailable"
	// Warning: usable, with a caveat in Detail (say, emulation instead of
	// KVM).
	Warning Status = "warning"
)

// Check is one row of the report.
type Check struct {
	// Name identifies the check; the names are listed on Report.
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Required is true for what the default configuration needs: qemu,
	// accelerator, tun and image. Only these can be Missing.
	Required bool `json:"required"`
	// Value is the fact in a word, for scripts: see Report for each
	// check's values. "" when there is none.
	Value string `json:"value"`
	// Detail says what was found, for a person.
	Detail string `json:"detail"`
	// Fix says what to do about a status other than ok; "" if nothing.
	Fix string `json:"fix"`
}

// Report is what Probe found. Its JSON form, printed by `joey check
// --json`, is stable: keys are never renamed or removed, all of them are
// always present, and new ones may be added.
//
//	{
//	  "schema": 1,             // SchemaVersion
//	  "ok": true,              // the default configuration can run a container here
//	  "accelerator": "tcg",    // what QEMU will use: "kvm", "tcg", or "" for none
//	  "checks": [              // always in this order
//	    {"name": "kvm", "status": "unavailable", "required": false,
//	     "value": "pvm", "detail": "…", "fix": "…"},
//	    …
//	  ]
//	}
//
// The checks, with their values:
//
//	kvm          hardware | pvm | absent    (what /dev/kvm is; only hardware boots a stock kernel)
//	qemu         QEMU version, "" if none   (detail has the binary's path)
//	tcg          tcg | ""                   (QEMU's software emulation)
//	accelerator  kvm | tcg | ""             (what the default configuration's QEMU uses, and why)
//	builtin-vmm  kvm | ""                   (the in-process VMM needs hardware KVM)
//	tun          /dev/net/tun | ""
//	vhost-net    /dev/vhost-net | ""
//	vhost-vsock  /dev/vhost-vsock | ""
//	virtiofsd    its path | ""
//	cgroup-v2    unified | hybrid | v1 | none
//	containerd   its version | ""
//	image        the guest kernel version | ""
type Report struct {
	Schema      int     `json:"schema"`
	OK          bool    `json:"ok"`
	Accelerator string  `json:"accelerator"`
	Checks      []Check `json:"checks"`
}

// Check returns the row called name, and whether there is one.
func (r Report) Check(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// Host says where Probe looks.
type Host struct {
	// Root is prefixed to every fixed path the probes read (/dev, /sys,
	// /proc/self/mountinfo, /usr/libexec/virtiofsd, …); "" is "/".
	Root string
	// PATH is the list of directories searched for qemu-system-x86_64,
	// containerd and virtiofsd, as in $PATH (not prefixed with Root);
	// "" is the process's $PATH.
	PATH string
	// ImageDir is the guest image's directory; "" is DefaultImageDir.
	ImageDir string
}

func (h Host) withDefaults() Host {
	if h.Root == "" {
		h.Root = "/"
	}
	if h.PATH == "" {
		h.PATH = os.Getenv("PATH")
	}
	if h.ImageDir == "" {
		h.ImageDir = DefaultImageDir
	}
	return h
}

// Probe checks the host. It fails only when ctx ends; everything a host
// lacks is in the Report.
func Probe(ctx context.Context, host Host) (Report, error) {
	h := host.withDefaults()
	kvm := probeKVM(h)
	q := probeQEMU(ctx, h)
	checks := []Check{
		kvm.check(),
		q.check(),
		q.tcgCheck(),
		accelerator(kvm, q),
		builtinVMM(kvm),
		tun(h),
		vhostNet(h),
		vhostVsock(h),
		virtiofsd(ctx, h),
		cgroupV2(h),
		containerd(ctx, h),
		image(ctx, h.ImageDir),
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	r := Report{Schema: SchemaVersion, OK: true, Checks: checks}
	for _, c := range checks {
		if c.Name == "accelerator" {
			r.Accelerator = c.Value
		}
		if c.Status == Missing {
			r.OK = false
		}
	}
	return r, nil
}
