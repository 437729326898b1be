package machine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/vmm/kvm"
	"github.com/joeyrt/joey/vmm/serial"
	"golang.org/x/sys/unix"
)

// codeAddr is where a tiny guest's code sits; it runs in real mode with
// CS base 0.
const codeAddr = 0x1000

// requireKVM skips (or fails) unless /dev/kvm can be opened.
func requireKVM(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	s, err := kvm.Open("")
	if err != nil {
		testutil.Unavailable(t, "no usable /dev/kvm: "+err.Error())
	}
	s.Close()
}

// tinyGuest makes a 1-vCPU machine without irqchip running code in real
// mode at codeAddr, with DS based at dsBase.
func tinyGuest(t *testing.T, cfg Config, code []byte, dsBase uint64) *Machine {
	t.Helper()
	requireKVM(t)
	testutil.CountVM(t)
	if cfg.MemorySize == 0 {
		cfg.MemorySize = 64 << 10
	}
	cfg.VCPUs = 1
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := m.Memory().WriteAt(code, codeAddr); err != nil {
		t.Fatal(err)
	}
	c := m.VCPUs()[0]
	s, err := c.GetSregs()
	if err != nil {
		t.Fatal(err)
	}
	s.CS.Base, s.CS.Selector = 0, 0
	s.DS.Base, s.DS.Selector = dsBase, uint16(dsBase>>4)
	if err := c.SetSregs(s); err != nil {
		t.Fatal(err)
	}
	if err := c.SetRegs(kvm.Regs{RIP: codeAddr, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	return m
}

func run(t *testing.T, m *Machine) End {
	t.Helper()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("guest still running: %v", m.Stop())
	}
	return m.Wait()
}

// Real-mode instructions the tests assemble by hand.
func movDX(port uint16) []byte { return []byte{0xba, byte(port), byte(port >> 8)} }
func movAL(v byte) []byte      { return []byte{0xb0, v} }

var (
	outDXAL = []byte{0xee}
	inALDX  = []byte{0xec}
	hlt     = []byte{0xf4}
)

func asm(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestGuestBytesOnPort3F8ReachSerialWriter(t *testing.T) {
	var code []byte
	code = append(code, movDX(0x3f8)...)
	for _, c := range []byte("joey\n") {
		code = append(code, asm(movAL(c), outDXAL)...)
	}
	// rep outsb of "ok\n" from DS:0x100.
	code = append(code, 0xbe, 0x00, 0x01, 0xb9, 0x03, 0x00, 0xf3, 0x6e)
	code = append(code, hlt...)
	m := tinyGuest(t, Config{}, code, 0)
	if err := m.Memory().WriteAt([]byte("ok\n"), 0x100); err != nil {
		t.Fatal(err)
	}
	var out testutil.SyncBuffer
	if err := m.AddPort(0x3f8, serial.Ports, serial.New(&out, nil)); err != nil {
		t.Fatal(err)
	}
	end := run(t, m)
	if end.Reason != Halted {
		t.Fatalf("end = %v, want halted", end)
	}
	if got := out.String(); got != "joey\nok\n" {
		t.Fatalf("serial got %q", got)
	}
}

// mmioRecorder records writes and answers reads with a fixed byte.
type mmioRecorder struct {
	mu     sync.Mutex
	writes []string
	reads  []uint64
}

func (r *mmioRecorder) ReadMMIO(off uint64, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads = append(r.reads, off)
	for i := range data {
		data[i] = 0x42
	}
	return nil
}

func (r *mmioRecorder) WriteMMIO(off uint64, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, fmt.Sprintf("%#x %#x", off, data[0]))
	return nil
}

func TestGuestMMIOReachesDeviceWithAddressAndData(t *testing.T) {
	const mmioBase = 0x20000 // past the 64 KiB of RAM
	code := asm(
		[]byte{0xc6, 0x06, 0x10, 0x00, 0x5a}, // mov byte [0x10], 0x5a
		[]byte{0xa0, 0x20, 0x00},             // mov al, [0x20]
		movDX(0x3f8), outDXAL,                // report what the read returned
		hlt)
	m := tinyGuest(t, Config{}, code, mmioBase)
	rec := &mmioRecorder{}
	if err := m.AddMMIO(mmioBase, 0x1000, rec); err != nil {
		t.Fatal(err)
	}
	var out testutil.SyncBuffer
	if err := m.AddPort(0x3f8, serial.Ports, serial.New(&out, nil)); err != nil {
		t.Fatal(err)
	}
	if end := run(t, m); end.Reason != Halted {
		t.Fatalf("end = %v", end)
	}
	if len(rec.writes) != 1 || rec.writes[0] != "0x10 0x5a" {
		t.Fatalf("device writes = %q, want [0x10 0x5a]", rec.writes)
	}
	if len(rec.reads) != 1 || rec.reads[0] != 0x20 {
		t.Fatalf("device reads = %v, want [0x20]", rec.reads)
	}
	if out.String() != "\x42" {
		t.Fatalf("guest read %q from the device, want 0x42", out.String())
	}
}

func TestUnknownPortFailsTheVMWhenNobodyListens(t *testing.T) {
	m := tinyGuest(t, Config{}, asm(movDX(0x1234), movAL(7), outDXAL, hlt), 0)
	end := run(t, m)
	if end.Reason != Failed || end.Err == nil || !strings.Contains(end.Err.Error(), "port 0x1234") {
		t.Fatalf("end = %v, want failed naming port 0x1234", end)
	}
}

func TestUnknownPortIsReportedAndReadsAllOnes(t *testing.T) {
	var got []Access
	cfg := Config{Unhandled: func(a Access) error {
		a.Data = append([]byte(nil), a.Data...)
		got = append(got, a)
		return nil
	}}
	code := asm(movDX(0x1234), movAL(7), outDXAL, inALDX, movDX(0x3f8), outDXAL, hlt)
	m := tinyGuest(t, cfg, code, 0)
	var out testutil.SyncBuffer
	if err := m.AddPort(0x3f8, serial.Ports, serial.New(&out, nil)); err != nil {
		t.Fatal(err)
	}
	if end := run(t, m); end.Reason != Halted {
		t.Fatalf("end = %v", end)
	}
	if len(got) != 2 || got[0].Addr != 0x1234 || !got[0].Write || got[0].Data[0] != 7 ||
		got[1].Addr != 0x1234 || got[1].Write || got[1].Data[0] != 0xff {
		t.Fatalf("reported accesses = %v", got)
	}
	if out.String() != "\xff" {
		t.Fatalf("unclaimed read returned %q, want 0xff", out.String())
	}
}

func TestStopEndsASpinningGuestWithoutLeakingGoroutines(t *testing.T) {
	requireKVM(t)
	before := runtime.NumGoroutine()
	m := tinyGuest(t, Config{}, []byte{0xeb, 0xfe}, 0) // jmp $
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case <-m.Done():
		t.Fatalf("spinning guest ended by itself: %v", m.Wait())
	default:
	}
	done := make(chan End)
	go func() { done <- m.Stop() }()
	select {
	case end := <-done:
		if end.Reason != Stopped {
			t.Fatalf("end = %v, want stopped", end)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Stop did not return: the vCPU was not kicked out of KVM_RUN")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// TestIOEventFDTakesTheWriteWithoutAnExit: a registered write signals the
// eventfd inside KVM and never reaches the MMIO device; a write of
// another length, and any write after the registration is removed, still
// does.
func TestIOEventFDTakesTheWriteWithoutAnExit(t *testing.T) {
	const mmioBase = 0x20000
	code := asm(
		[]byte{0xc7, 0x06, 0x10, 0x00, 0x34, 0x12}, // mov word [0x10], 0x1234: the eventfd's
		[]byte{0xc6, 0x06, 0x10, 0x00, 0x5a},       // mov byte [0x10], 0x5a: another length
		movDX(0x3f8), outDXAL,                      // let the test deregister
		[]byte{0xc7, 0x06, 0x10, 0x00, 0x78, 0x56}, // mov word [0x10], 0x5678: the device's again
		hlt)
	m := tinyGuest(t, Config{}, code, mmioBase)
	rec := &mmioRecorder{}
	if err := m.AddMMIO(mmioBase, 0x1000, rec); err != nil {
		t.Fatal(err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := m.IOEventFD(mmioBase+0x10, 2, efd, true); err != nil {
		t.Fatal(err)
	}
	var count [8]byte
	deregistered := false
	port := portFunc(func(off uint16, data []byte) error {
		// The vCPU waits here: the first write has been taken by then.
		if _, err := unix.Read(efd, count[:]); err != nil {
			t.Errorf("eventfd after the registered write: %v", err)
		}
		if err := m.IOEventFD(mmioBase+0x10, 2, efd, false); err != nil {
			t.Error(err)
		}
		deregistered = true
		return nil
	})
	if err := m.AddPort(0x3f8, 1, port); err != nil {
		t.Fatal(err)
	}
	if end := run(t, m); end.Reason != Halted {
		t.Fatalf("end = %v", end)
	}
	if !deregistered || binary.LittleEndian.Uint64(count[:]) != 1 {
		t.Fatalf("eventfd count %d (deregistered %v), want 1", binary.LittleEndian.Uint64(count[:]), deregistered)
	}
	if got := strings.Join(rec.writes, ","); got != "0x10 0x5a,0x10 0x78" {
		t.Fatalf("device writes %q, want the byte write and the write after deregistering", got)
	}
}

// portFunc is a port device that calls itself for every write.
type portFunc func(offset uint16, data []byte) error

func (f portFunc) ReadPort(uint16, []byte) error              { return nil }
func (f portFunc) WritePort(offset uint16, data []byte) error { return f(offset, data) }
