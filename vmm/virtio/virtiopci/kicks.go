package virtiopci

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/vmm/pci"
)

// EventRegistrar registers ioeventfds: the machine, through KVM_IOEVENTFD.
type EventRegistrar interface {
	IOEventFD(addr uint64, length uint32, fd int, assign bool) error
}

// notifyWriteLen is the width of a queue notification as Linux writes it
// (vp_notify's iowrite16 of the queue index).
const notifyWriteLen = 2

// kicks are the ioeventfds queue notifications arrive through: KVM takes
// the guest's write to a queue's notify address and signals that queue's
// eventfd, so the vCPU goes straight back to the guest instead of exiting
// to this process, and a goroutine per queue passes the kick on.
type kicks struct {
	reg EventRegistrar
	// fds are the eventfds, one per queue, registered by number; files
	// read them (through Go's poller, so Close ends the reads).
	fds   []int
	files []*os.File
	wg    sync.WaitGroup
	// mu guards at and closed.
	mu     sync.Mutex
	at     uint64 // BAR address the eventfds are registered for; 0: none
	closed bool
	// err is the last registration failure; notifications then take the
	// exit path, which works at every address.
	err error
}

// UseIOEventFDs has queue notifications arrive through eventfds KVM
// signals, from the moment the guest enables the BAR (see BARsDecoded);
// until then, and wherever registering fails, they arrive as MMIO writes
// as before. Call it before the transport is on a bus.
func (t *Transport) UseIOEventFDs(reg EventRegistrar) error {
	if t.kicks != nil {
		return errors.New("virtio-pci: ioeventfds already in use")
	}
	k := &kicks{reg: reg}
	for q := range t.maxSizes {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			k.close()
			return fmt.Errorf("virtio-pci %v: eventfd for queue %d: %w", t.dev.Type(), q, err)
		}
		k.fds = append(k.fds, fd)
		k.files = append(k.files, os.NewFile(uintptr(fd), fmt.Sprintf("virtio-%v-kick-%d", t.dev.Type(), q)))
	}
	for q, f := range k.files {
		k.wg.Go(func() {
			var count [8]byte
			for {
				if _, err := f.Read(count[:]); err != nil {
					return // closed
				}
				t.fdKicks.Add(1)
				t.notify(q)
			}
		})
	}
	t.kicks = k
	return nil
}

// BARsDecoded implements pci.DecodeWatcher: the eventfds follow BAR 0,
// registered while it decodes, at the address it decodes at.
func (t *Transport) BARsDecoded(at [pci.NumBARs]uint64) {
	k := t.kicks
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || at[BAR] == k.at {
		return
	}
	k.unregister(len(k.fds))
	if at[BAR] == 0 {
		return
	}
	for q, fd := range k.fds {
		if err := k.reg.IOEventFD(at[BAR]+notifyOffset+uint64(q)*NotifyMultiplier, notifyWriteLen, fd, true); err != nil {
			k.err = fmt.Errorf("virtio-pci %v: queue %d: %w", t.dev.Type(), q, err)
			k.at = at[BAR]
			k.unregister(q)
			return
		}
	}
	k.at = at[BAR]
}

// unregister removes the registrations of the first n queues at k.at.
func (k *kicks) unregister(n int) {
	if k.at == 0 {
		return
	}
	for q := range n {
		// A failure leaves a registration KVM drops with the VM; the
		// eventfd's reader stops at Close.
		_ = k.reg.IOEventFD(k.at+notifyOffset+uint64(q)*NotifyMultiplier, notifyWriteLen, k.fds[q], false)
	}
	k.at = 0
}

func (k *kicks) close() {
	k.mu.Lock()
	k.closed = true
	k.unregister(len(k.fds))
	k.mu.Unlock()
	for _, f := range k.files {
		f.Close()
	}
	k.wg.Wait()
}

// Close stops the ioeventfds' goroutines and removes the registrations.
// The device itself is its owner's to close.
func (t *Transport) Close() error {
	if t.kicks != nil {
		t.kicks.close()
	}
	return nil
}

// Kicks counts the queue notifications that came through an ioeventfd
// and those that came as MMIO exits.
func (t *Transport) Kicks() (viaEventFD, viaExit uint64) {
	return t.fdKicks.Load(), t.exitKicks.Load()
}

// IOEventFDErr is why the ioeventfds could not be registered last, if
// they could not.
func (t *Transport) IOEventFDErr() error {
	if t.kicks == nil {
		return nil
	}
	t.kicks.mu.Lock()
	defer t.kicks.mu.Unlock()
	return t.kicks.err
}

var _ pci.DecodeWatcher = (*Transport)(nil)

// counters is embedded in Transport.
type counters struct {
	fdKicks, exitKicks atomic.Uint64
}
