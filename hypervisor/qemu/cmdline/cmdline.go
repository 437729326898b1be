// Package cmdline builds QEMU command lines from typed values. Each value is
// one option (a -machine, an -object, a -netdev, a -device …) that checks its
// own fields and renders its own arguments; a value that passes files to QEMU
// owns them and closes them when the command line is discarded. Nothing here
// runs QEMU.
package cmdline

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Option is one part of a QEMU command line.
type Option interface {
	// Args renders the option. Files it passes to QEMU are added to fds,
	// which numbers them as QEMU will see them.
	Args(fds *FDs) ([]string, error)
}

// FDs collects the files a command line passes to QEMU. They become
// exec.Cmd.ExtraFiles, so the first one is fd 3 in QEMU, the next fd 4, ….
type FDs struct {
	files []*os.File
}

// Add appends f and returns its fd number in QEMU.
func (f *FDs) Add(file *os.File) int {
	f.files = append(f.files, file)
	return 2 + len(f.files)
}

// Files returns the files in fd order: pass them as exec.Cmd.ExtraFiles.
func (f *FDs) Files() []*os.File { return f.files }

// Cmdline is an ordered list of options.
type Cmdline struct {
	opts []Option
}

// New returns a command line made of opts, in order.
func New(opts ...Option) *Cmdline { return &Cmdline{opts: opts} }

// Add appends opts.
func (c *Cmdline) Add(opts ...Option) { c.opts = append(c.opts, opts...) }

// Build renders every option. files must become exec.Cmd.ExtraFiles as they
// are; they stay owned by the options (see Close).
func (c *Cmdline) Build() (args []string, files []*os.File, err error) {
	var fds FDs
	for _, o := range c.opts {
		a, err := o.Args(&fds)
		if err != nil {
			return nil, nil, err
		}
		args = append(args, a...)
	}
	return args, fds.Files(), nil
}

// Close closes the files of every option that owns some. Call it once QEMU
// has started (it holds its own copies) or when the command line is dropped.
func (c *Cmdline) Close() error {
	var errs []error
	for _, o := range c.opts {
		if cl, ok := o.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	return errors.Join(errs...)
}

// Transport is how a virtio device reaches the guest: the device name's
// suffix.
type Transport string

const (
	// MMIO is virtio-mmio, the only transport of the microvm machine.
	MMIO Transport = "device"
	// PCI is virtio-pci, for pc and q35.
	PCI Transport = "pci"
)

// driver returns the QEMU driver name base-transport.
func (t Transport) driver(base string) (string, error) {
	switch t {
	case MMIO, PCI:
		return base + "-" + string(t), nil
	}
	return "", fmt.Errorf("%s: transport %q is not %q or %q", base, t, MMIO, PCI)
}

// plainDevice renders a virtio device that has no properties but its id and
// bus: -device base-transport,id=ID[,bus=BUS].
func plainDevice(base, id string, t Transport, bus string) ([]string, error) {
	drv, err := t.driver(base)
	if err != nil {
		return nil, err
	}
	if err := checkID(drv, id); err != nil {
		return nil, err
	}
	p := props{"id=" + id}
	p.add("bus", bus)
	return []string{"-device", p.join(drv)}, nil
}

// escape doubles commas, QEMU's way of quoting them inside an option value.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// checkID reports whether id is a valid QEMU object id: a letter, then
// letters, digits, '-', '.' or '_'.
func checkID(what, id string) error {
	ok := id != ""
	for i, r := range id {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if i == 0 && !letter || !letter && !(r >= '0' && r <= '9') && r != '-' && r != '.' && r != '_' {
			ok = false
			break
		}
	}
	if !ok {
		return fmt.Errorf("%s: id %q must start with a letter and hold only letters, digits, '-', '.', '_'", what, id)
	}
	return nil
}

// checkRefs checks ids that an option refers to, given as field, id pairs.
func checkRefs(what string, fieldIDs ...string) error {
	for i := 0; i+1 < len(fieldIDs); i += 2 {
		if err := checkID(what+" "+fieldIDs[i], fieldIDs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// checkPath refuses empty paths; QEMU would read "" as "no file".
func checkPath(what, field, p string) error {
	if p == "" {
		return fmt.Errorf("%s: %s is empty", what, field)
	}
	return nil
}

// props renders key=value pairs, skipping empty values, after a head.
type props []string

func (p *props) add(key, value string) {
	if value != "" {
		*p = append(*p, key+"="+value)
	}
}

func (p props) join(head string) string {
	return strings.Join(append([]string{head}, p...), ",")
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
