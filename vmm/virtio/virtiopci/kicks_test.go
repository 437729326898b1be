package virtiopci_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/vmm/pci"
	"github.com/joeyrt/joey/vmm/virtio/virtiopci"
)

// registrar stands in for KVM: it records the registrations and lets the
// test signal a registered eventfd as KVM would on the guest's write.
type registrar struct {
	mu   sync.Mutex
	fail error
	regs map[uint64]int // notify address -> eventfd
	log  []string
}

func (r *registrar) IOEventFD(addr uint64, length uint32, fd int, assign bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if assign && r.fail != nil {
		return r.fail
	}
	if r.regs == nil {
		r.regs = map[uint64]int{}
	}
	if assign {
		r.regs[addr] = fd
	} else {
		delete(r.regs, addr)
	}
	r.log = append(r.log, fmt.Sprintf("%v %#x/%d", assign, addr, length))
	return nil
}

func (r *registrar) addrs() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var a []uint64
	for k := range r.regs {
		a = append(a, k)
	}
	slices.Sort(a)
	return a
}

// guestWrite is KVM taking the guest's 2-byte write at addr.
func (r *registrar) guestWrite(t *testing.T, addr uint64) {
	t.Helper()
	r.mu.Lock()
	fd, ok := r.regs[addr]
	r.mu.Unlock()
	if !ok {
		t.Fatalf("no eventfd at %#x", addr)
	}
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(fd, one[:]); err != nil {
		t.Fatal(err)
	}
}

func notifyAddr(bar uint64, q int) uint64 {
	return bar + 0x3000 + uint64(q)*virtiopci.NotifyMultiplier
}

func TestQueueKicksComeThroughIOEventFDsAtTheBARsAddress(t *testing.T) {
	reg := &registrar{}
	r := newRigWith(t, newEcho(64, 64), reg)
	if len(reg.addrs()) != 0 {
		t.Fatalf("registered %#x before the guest enabled the BAR", reg.addrs())
	}
	d := r.probe()
	bar := d.Layout().BARs[virtiopci.BAR]
	if got, want := reg.addrs(), []uint64{notifyAddr(bar, 0), notifyAddr(bar, 1)}; !slices.Equal(got, want) {
		t.Fatalf("eventfds at %#x, want %#x", got, want)
	}
	msg := "kicked through an eventfd"
	d.Queue(1).Add([][]byte{[]byte(msg)}, []int{len(msg)})
	reg.guestWrite(t, notifyAddr(bar, 1))
	if u := d.Queue(1).Wait(t, timeout); string(u.Data) != msg {
		t.Fatalf("echoed %q", u.Data)
	}
	if fd, exit := r.tr.Kicks(); fd != 1 || exit != 0 {
		t.Fatalf("kicks: %d through the eventfd, %d as exits; want 1, 0", fd, exit)
	}
	// A write KVM did not take (another length) still works as an exit.
	echoOnce(t, d, 0, "as an exit")
	if _, exit := r.tr.Kicks(); exit != 1 {
		t.Fatalf("%d kicks as exits, want 1", exit)
	}

	// Decoding off: the registrations go; on again elsewhere: they follow.
	d.ConfigWrite(pci.RegCommand, 2, d.ConfigRead(pci.RegCommand, 2)&^pci.CommandMemory)
	if len(reg.addrs()) != 0 {
		t.Fatalf("eventfds still at %#x with memory decoding off", reg.addrs())
	}
	d.ConfigWrite(pci.RegCommand, 2, d.ConfigRead(pci.RegCommand, 2)|pci.CommandMemory)
	if len(reg.addrs()) != 2 {
		t.Fatalf("eventfds at %#x after decoding came back", reg.addrs())
	}
	if err := r.tr.Close(); err != nil {
		t.Fatal(err)
	}
	if len(reg.addrs()) != 0 {
		t.Fatalf("eventfds still registered at %#x after Close", reg.addrs())
	}
}

func TestAFailedRegistrationLeavesKicksToTheExitPath(t *testing.T) {
	reg := &registrar{fail: errors.New("no ioeventfd here")}
	r := newRigWith(t, newEcho(64), reg)
	d := r.probe()
	if err := r.tr.IOEventFDErr(); err == nil {
		t.Fatal("no error recorded for the failed registration")
	}
	echoOnce(t, d, 0, "still works")
	if fd, exit := r.tr.Kicks(); fd != 0 || exit != 1 {
		t.Fatalf("kicks: %d through an eventfd, %d as exits; want 0, 1", fd, exit)
	}
}
