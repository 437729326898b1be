// Package tap makes and opens Linux TAP devices in pure Go: TUNSETIFF on
// /dev/net/tun through golang.org/x/sys/unix, link settings through netlink,
// inside any network namespace. Both the network resource of the runtime and
// the built-in VMM use it, which is why it lives under internal/ and imports
// neither.
//
// Every queue file has exactly one owner. A Tap owns its files until
// TakeFiles hands them to a new owner (a QEMU netdev, a virtio-net device),
// which then closes them.
package tap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Tap is an open TAP device: its queue files and the facts about its link.
type Tap struct {
	name    string
	index   int
	created bool // Create made the link (Open did not)
	persist bool // the link outlives its files

	mu sync.Mutex
	// nl is a netlink handle in the TAP's namespace, kept only when Close
	// may have to delete the link: by then the namespace's path may be gone,
	// but the handle's socket still reaches it. Guarded by mu.
	nl     *netlink.Handle
	files  []*os.File // owned queue files; guarded by mu
	taken  bool       // TakeFiles gave the files away; guarded by mu
	closed bool       // guarded by mu
}

// Create makes a new TAP named opts.Name in opts.NetNS with opts.Queues
// queue files, sets its MTU and MAC and brings it up. It fails if a link with
// that name already exists. The files are opened non-blocking, so an
// *os.File read from Go waits in the runtime poller.
//
// Unless opts.Persist is set, the link lives only as long as its files and
// Close deletes it.
func Create(ctx context.Context, opts Options) (*Tap, error) {
	if err := opts.validate(false); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tap: create %q: %w", opts.Name, err)
	}
	t := &Tap{created: true, persist: opts.Persist}
	err := inNetNS(opts.NetNS, func() (retErr error) {
		defer func() {
			if retErr != nil {
				t.rollbackCreate()
			}
		}()
		// IFF_TUN_EXCL makes the kernel refuse an existing name instead of
		// attaching to it, so Create never adopts someone else's link.
		name, err := t.openQueues(opts, unix.IFF_TUN_EXCL)
		if err != nil {
			return err
		}
		t.name = name
		if opts.Persist {
			if err := setPersist(t.files[0], true); err != nil {
				return err
			}
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		t.nl = h
		if err := t.configure(h, opts); err != nil {
			return err
		}
		if opts.Persist {
			t.nl.Close()
			t.nl = nil
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tap: create %q: %w", opts.Name, err)
	}
	return t, nil
}

// Open attaches opts.Queues new queue files to the existing TAP opts.Name in
// opts.NetNS — typically a persistent one made earlier — and applies the
// MTU and MAC if given and brings it up. opts.Queues must match how the TAP
// was made (1 for single-queue). Close never deletes a link Open found.
func Open(ctx context.Context, opts Options) (*Tap, error) {
	if err := opts.validate(true); err != nil {
		return nil, err
	}
	if opts.Persist {
		return nil, fmt.Errorf("tap: open %q: Persist applies to Create only; the TAP keeps the persistence it was made with", opts.Name)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tap: open %q: %w", opts.Name, err)
	}
	t := &Tap{name: opts.Name}
	err := inNetNS(opts.NetNS, func() (retErr error) {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		defer h.Close()
		defer func() {
			if retErr != nil {
				t.closeFiles()
			}
		}()
		// Check first: TUNSETIFF on a missing name would create a TAP.
		if err := checkExisting(h, opts); err != nil {
			return err
		}
		if _, err := t.openQueues(opts, 0); err != nil {
			return err
		}
		return t.configure(h, opts)
	})
	if err != nil {
		return nil, fmt.Errorf("tap: open %q: %w", opts.Name, err)
	}
	return t, nil
}

// Delete removes the TAP name from the network namespace at netnsPath (""
// = the process's own), for persistent TAPs and for cleaning up after a
// process that died. It refuses links that are not TAPs, and returns an
// error satisfying errors.Is(err, fs.ErrNotExist) if there is no such link.
func Delete(ctx context.Context, netnsPath, name string) error {
	if err := validateName(name, true); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tap: delete %q: %w", name, err)
	}
	err := inNetNS(netnsPath, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		defer h.Close()
		link, err := lookupTap(h, name)
		if err != nil {
			return err
		}
		if err := h.LinkDel(link); err != nil {
			return fmt.Errorf("delete link: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tap: delete %q: %w", name, err)
	}
	return nil
}

// Name is the link's name (the kernel's choice if Options.Name was empty).
func (t *Tap) Name() string { return t.name }

// Index is the link's interface index in its namespace.
func (t *Tap) Index() int { return t.index }

// Files returns the queue files, one per queue. The Tap still owns them:
// do not close them, and do not use them after Close. Nil after TakeFiles
// or Close.
func (t *Tap) Files() []*os.File {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*os.File(nil), t.files...)
}

// TakeFiles hands the queue files to the caller, who must close them; Close
// will not. Later calls return nil.
func (t *Tap) TakeFiles() []*os.File {
	t.mu.Lock()
	defer t.mu.Unlock()
	files := t.files
	t.files = nil
	if files != nil {
		t.taken = true
	}
	return files
}

// Close closes the files the Tap still owns. If Create made the link and it
// is not persistent, Close also deletes the link — even when TakeFiles gave
// the files away, whose holder then sees EBADFD — so call it once whoever
// took the files (the VM) is done. A link that is already gone is fine.
// Close is idempotent.
func (t *Tap) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	if t.nl != nil {
		// Closing our own files removes a non-persistent link, but files
		// somebody took may still hold it up; delete it by index.
		if t.taken {
			link := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Index: t.index, Name: t.name}}
			if err := t.nl.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("delete link: %w", err))
			}
		}
		t.nl.Close()
		t.nl = nil
	}
	errs = append(errs, t.closeFiles())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tap: close %q: %w", t.name, err)
	}
	return nil
}

func (t *Tap) closeFiles() error {
	var errs []error
	for _, f := range t.files {
		errs = append(errs, f.Close())
	}
	t.files = nil
	return errors.Join(errs...)
}

// rollbackCreate undoes a failed Create from inside the namespace: clearing
// persistence first makes closing the files remove the link.
func (t *Tap) rollbackCreate() {
	if t.persist && len(t.files) > 0 {
		_ = setPersist(t.files[0], false) // best effort; the error being returned says what went wrong
	}
	t.closeFiles()
	if t.nl != nil {
		t.nl.Close()
		t.nl = nil
	}
}

// errNotTap is wrapped for a link that exists but is no TAP.
var errNotTap = errors.New("not a TAP")

// lookupTap finds name and checks it is a TAP; a missing link wraps
// fs.ErrNotExist.
func lookupTap(h *netlink.Handle, name string) (*netlink.Tuntap, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("no link %q: %w", name, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("look up link: %w", err)
	}
	tt, ok := link.(*netlink.Tuntap)
	if !ok || tt.Mode != netlink.TUNTAP_MODE_TAP {
		return nil, fmt.Errorf("link %q is a %s: %w", name, describe(link), errNotTap)
	}
	return tt, nil
}

func describe(link netlink.Link) string {
	if tt, ok := link.(*netlink.Tuntap); ok && tt.Mode == netlink.TUNTAP_MODE_TUN {
		return "TUN device"
	}
	return link.Type() + " link"
}
