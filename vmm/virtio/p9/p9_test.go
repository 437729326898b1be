package p9

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/p9fs"
	"github.com/joeyrt/joey/vmm/p9fs/p9fstest"
	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

// 9P message types the tests send and expect.
const (
	tLopen   = 12
	rLopen   = 13
	tGetattr = 24
	rGetattr = 25
	tVersion = 100
	rVersion = 101
	tAttach  = 104
	rAttach  = 105
	tWalk    = 110
	rWalk    = 111
	tRead    = 116
	rRead    = 117
	tClunk   = 120
	noTag    = 0xffff
	noFid    = uint32(0xffffffff)

	errnoEBADF      = 9
	errnoEOPNOTSUPP = 95
)

const hostContent = "bytes from the host file"

// rig is a device over a served directory, driven like a guest would.
type rig struct {
	t     *testing.T
	share string
	srv   *p9fs.Server
	mem   *memory.Memory
	alloc *virtiotest.Alloc
	irq   *virtiotest.Interrupts
	dev   *Device
	q     *virtiotest.Queue
}

func newRig(t *testing.T) *rig {
	t.Helper()
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "hello"), []byte(hostContent), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := p9fs.New(share, p9fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	// Made before the device so that the device is closed first.
	mem := virtiotest.Memory(t, 16<<20)
	dev, err := New("share", srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return &rig{t: t, share: share, srv: srv, mem: mem, alloc: virtiotest.NewAlloc(0x1000, 16<<20), irq: virtiotest.NewInterrupts(), dev: dev}
}

// activate gives the device a fresh request queue, as a driver does after
// a reset.
func (r *rig) activate() {
	r.t.Helper()
	r.q = virtiotest.NewQueue(r.mem, r.alloc, QueueSize)
	features := virtio.FeatureVersion1 | FeatureMountTag
	if err := r.dev.Activate(r.mem, features, []*virtio.Queue{r.q.Device(r.t, features)}, r.irq); err != nil {
		r.t.Fatal(err)
	}
}

// send queues one request with writable bytes of room for the reply.
func (r *rig) send(frame []byte, writable int) uint16 {
	head := r.q.Add([][]byte{frame}, []int{writable})
	r.dev.Notify(0)
	return head
}

func (r *rig) wait() virtiotest.Used { return r.q.Wait(r.t, 10*time.Second) }

// rpc sends a request and returns the reply's type and body, checking
// that the reply carries the request's tag.
func (r *rig) rpc(frame []byte) (uint8, []byte) {
	r.t.Helper()
	r.send(frame, 8192)
	u := r.wait()
	return r.check(u, frame)
}

func (r *rig) check(u virtiotest.Used, req []byte) (uint8, []byte) {
	r.t.Helper()
	if len(u.Data) < headerLen || int(binary.LittleEndian.Uint32(u.Data)) != len(u.Data) {
		r.t.Fatalf("reply of %d bytes is not one 9P message: %x", len(u.Data), u.Data)
	}
	if got, want := binary.LittleEndian.Uint16(u.Data[5:]), binary.LittleEndian.Uint16(req[5:]); got != want {
		r.t.Fatalf("reply tag %d, want %d", got, want)
	}
	return u.Data[4], u.Data[headerLen:]
}

func (r *rig) ok(frame []byte, want uint8) []byte {
	r.t.Helper()
	typ, body := r.rpc(frame)
	if typ != want {
		r.t.Fatalf("request type %d: reply type %d (%x), want %d", frame[4], typ, body, want)
	}
	return body
}

// lerror expects an Rlerror and returns its errno.
func (r *rig) lerror(u virtiotest.Used, req []byte) uint32 {
	r.t.Helper()
	typ, body := r.check(u, req)
	if typ != msgRlerror {
		r.t.Fatalf("reply type %d, want Rlerror", typ)
	}
	return binary.LittleEndian.Uint32(body)
}

// mount does what Linux's mount does first: version, attach fid 1.
func (r *rig) mount() {
	r.t.Helper()
	body := r.ok(p9fstest.Tmsg(tVersion, noTag, uint32(262144), "9P2000.L"), rVersion)
	if msize := binary.LittleEndian.Uint32(body); msize != 262144 {
		r.t.Errorf("negotiated msize %d", msize)
	}
	r.ok(p9fstest.Tmsg(tAttach, 1, uint32(1), noFid, "root", "", uint32(0)), rAttach)
}

// openHello walks fid 1 to hello as fid 2 and opens it.
func (r *rig) openHello() {
	r.t.Helper()
	r.ok(p9fstest.Tmsg(tWalk, 2, uint32(1), uint32(2), uint16(1), "hello"), rWalk)
	r.ok(p9fstest.Tmsg(tLopen, 3, uint32(2), uint32(0)), rLopen)
}

func TestDeviceIsType9WithTheMountTagFeatureAndOneQueue(t *testing.T) {
	r := newRig(t)
	if r.dev.Type() != virtio.Type9P {
		t.Errorf("type %v", r.dev.Type())
	}
	if r.dev.Features()&FeatureMountTag == 0 {
		t.Errorf("features %#x lack VIRTIO_9P_MOUNT_TAG", r.dev.Features())
	}
	if got := r.dev.QueueSizes(); len(got) != 1 || got[0] != QueueSize {
		t.Errorf("queue sizes %v", got)
	}
}

func TestConfigSpaceIsTheTagLengthThenTheTag(t *testing.T) {
	r := newRig(t)
	r.dev.WriteConfig(0, []byte{0xff, 0xff, 'x'}) // read-only
	for _, tc := range []struct {
		offset uint64
		n      int
		want   []byte
	}{
		{0, 2, []byte{5, 0}},
		{0, 7, []byte{5, 0, 's', 'h', 'a', 'r', 'e'}},
		{2, 5, []byte("share")},
		{1, 4, []byte{0, 's', 'h', 'a'}},
		{5, 4, []byte{'r', 'e', 0, 0}},
		{7, 4, []byte{0, 0, 0, 0}},
		{1 << 40, 2, []byte{0, 0}},
	} {
		got := bytes.Repeat([]byte{0xee}, tc.n)
		r.dev.ReadConfig(tc.offset, got)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("config [%d, +%d) = %q, want %q", tc.offset, tc.n, got, tc.want)
		}
	}
}

func TestNewRejectsTagsTheGuestCannotMount(t *testing.T) {
	srv, err := p9fs.New(t.TempDir(), p9fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, tag := range []string{"", strings.Repeat("t", MaxTagLen+1), "with space", "nul\x00", "tab\t", "é"} {
		if _, err := New(tag, srv); err == nil {
			t.Errorf("tag %q accepted", tag)
		}
	}
	for _, tag := range []string{"r", strings.Repeat("t", MaxTagLen), "kataShared", "vol-1_a.b"} {
		if _, err := New(tag, srv); err != nil {
			t.Errorf("tag %q: %v", tag, err)
		}
	}
	if _, err := New("ok", nil); err == nil {
		t.Error("nil server accepted")
	}
}

func TestReadingAHostFileThroughTheQueueReturnsItsBytes(t *testing.T) {
	r := newRig(t)
	r.activate()
	r.mount()
	r.openHello()
	body := r.ok(p9fstest.Tmsg(tRead, 4, uint32(2), uint64(0), uint32(4096)), rRead)
	if n := binary.LittleEndian.Uint32(body); string(body[4:4+n]) != hostContent {
		t.Errorf("read %q, want %q", body[4:4+n], hostContent)
	}
	if r.irq.Count(0) == 0 {
		t.Error("no queue interrupt was raised")
	}
	if err := r.dev.Err(); err != nil {
		t.Error(err)
	}
}

// gate holds back the requests hold picks until release is closed, in
// front of a real session: a request the server is slow to answer.
type gate struct {
	session
	hold func(frame []byte) bool
	// held receives each request held back.
	held    chan []byte
	release chan struct{}
	wg      sync.WaitGroup
}

func (g *gate) Submit(frame []byte) error {
	if !g.hold(frame) {
		return g.session.Submit(frame)
	}
	g.held <- frame
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		<-g.release
		g.session.Submit(frame)
	}()
	return nil
}

func (g *gate) Close() {
	g.session.Close()
	g.wg.Wait()
}

// holdReads makes the device's sessions hold every Tread, reporting it on
// held, until release is closed.
func (r *rig) holdReads() (held chan []byte, release chan struct{}) {
	held, release = make(chan []byte, 16), make(chan struct{})
	open := r.dev.open
	r.dev.open = func(reply func([]byte)) (session, error) {
		s, err := open(reply)
		if err != nil {
			return nil, err
		}
		return &gate{session: s, hold: func(f []byte) bool { return f[4] == tRead }, held: held, release: release}, nil
	}
	return held, release
}

// holdReadReplies makes the device's sessions hold every Rread on its way
// to the device, reporting it on held, until release is closed: a reply
// that arrives late.
func (r *rig) holdReadReplies() (held chan []byte, release chan struct{}) {
	held, release = make(chan []byte, 16), make(chan struct{})
	open := r.dev.open
	r.dev.open = func(reply func([]byte)) (session, error) {
		return open(func(frame []byte) {
			if frame[4] == rRead {
				held <- append([]byte(nil), frame...)
				<-release
			}
			reply(frame)
		})
	}
	return held, release
}

func TestRepliesCompleteOutOfOrderWhenARequestBlocks(t *testing.T) {
	r := newRig(t)
	held, release := r.holdReads()
	r.activate()
	r.mount()
	r.openHello()

	read := p9fstest.Tmsg(tRead, 20, uint32(2), uint64(0), uint32(4096))
	readHead := r.send(read, 4096)
	<-held
	getattr := p9fstest.Tmsg(tGetattr, 21, uint32(1), uint64(0x7ff))
	getattrHead := r.send(getattr, 4096)
	// A second request under the tag still in flight is refused at once.
	dup := p9fstest.Tmsg(tGetattr, 20, uint32(1), uint64(0x7ff))
	dupHead := r.send(dup, 4096)

	got := map[uint16]virtiotest.Used{}
	for range 2 {
		u := r.wait()
		got[u.Head] = u
	}
	if typ, _ := r.check(got[getattrHead], getattr); typ != rGetattr {
		t.Errorf("getattr behind a blocked read: reply type %d", typ)
	}
	if errno := r.lerror(got[dupHead], dup); errno != errnoEINVAL {
		t.Errorf("duplicate tag: errno %d, want EINVAL", errno)
	}
	if _, ok := got[readHead]; ok {
		t.Fatal("the blocked read completed before it was released")
	}
	close(release)
	u := r.wait()
	if u.Head != readHead {
		t.Fatalf("used head %d, want the read's %d", u.Head, readHead)
	}
	if typ, body := r.check(u, read); typ != rRead || !strings.Contains(string(body), hostContent) {
		t.Errorf("released read: type %d body %q", typ, body)
	}
}

func TestAReplyTooBigForItsChainIsAnErrorUnderItsTag(t *testing.T) {
	r := newRig(t)
	r.activate()
	r.mount()
	r.openHello()
	read := p9fstest.Tmsg(tRead, 30, uint32(2), uint64(0), uint32(4096))
	r.send(read, 16) // room for an Rlerror, not for the data
	if errno := r.lerror(r.wait(), read); errno != errnoENOBUFS {
		t.Errorf("errno %d, want ENOBUFS", errno)
	}
	r.send(p9fstest.Tmsg(tRead, 31, uint32(2), uint64(0), uint32(4096)), 8) // not even that
	if u := r.wait(); u.Written != 0 {
		t.Errorf("%d bytes written into 8 bytes of room", u.Written)
	}
	// The reply may be scattered over several small buffers.
	ok := p9fstest.Tmsg(tRead, 32, uint32(2), uint64(0), uint32(4096))
	r.q.Add([][]byte{ok}, []int{5, 6, 7, 100})
	r.dev.Notify(0)
	if typ, body := r.check(r.wait(), ok); typ != rRead || !strings.Contains(string(body), hostContent) {
		t.Errorf("scattered reply: type %d body %q", typ, body)
	}
}

func TestBadChainsAreAnsweredOrReturnedWithoutPanicking(t *testing.T) {
	r := newRig(t)
	r.activate()
	r.mount()
	clunk := p9fstest.Tmsg(tClunk, 40, uint32(99))
	lying := p9fstest.Tmsg(tClunk, 41, uint32(99))
	binary.LittleEndian.PutUint32(lying, 200) // longer than what is there
	unknown := p9fstest.Tmsg(250, 42, uint32(1))
	split := p9fstest.Tmsg(tGetattr, 43, uint32(1), uint64(0x7ff))

	for _, tc := range []struct {
		name     string
		readable [][]byte
		writable []int
		// errno is the Rlerror expected, 0 for a chain returned empty.
		errno uint32
		// reply, if set, is the reply type expected instead.
		reply uint8
		req   []byte
	}{
		{name: "no writable buffer", readable: [][]byte{clunk}},
		{name: "no readable buffer", writable: []int{64}},
		{name: "shorter than a header", readable: [][]byte{{1, 2, 3}}, writable: []int{64}},
		{name: "size beyond the readable bytes", readable: [][]byte{lying}, writable: []int{64}, errno: errnoEINVAL, req: lying},
		{name: "unknown message type", readable: [][]byte{unknown}, writable: []int{64}, errno: errnoEOPNOTSUPP, req: unknown},
		{name: "request split over buffers", readable: [][]byte{split[:3], split[3:9], split[9:]}, writable: []int{4096}, reply: rGetattr, req: split},
		{name: "trailing bytes after the message", readable: [][]byte{append(append([]byte{}, clunk...), 0xde, 0xad)}, writable: []int{64}, errno: errnoEBADF, req: clunk},
	} {
		r.q.Add(tc.readable, tc.writable)
		r.dev.Notify(0)
		u := r.wait()
		switch {
		case tc.reply != 0:
			if typ, _ := r.check(u, tc.req); typ != tc.reply {
				t.Errorf("%s: reply type %d, want %d", tc.name, typ, tc.reply)
			}
		case tc.errno != 0:
			if errno := r.lerror(u, tc.req); errno != tc.errno {
				t.Errorf("%s: errno %d, want %d", tc.name, errno, tc.errno)
			}
		case u.Written != 0:
			t.Errorf("%s: %d bytes written, want the chain back empty", tc.name, u.Written)
		}
	}
	// Still serving.
	r.openHello()
	if err := r.dev.Err(); err != nil {
		t.Errorf("device error after bad requests: %v", err)
	}
}

func TestABrokenRingStopsTheQueueAndResetRecoversIt(t *testing.T) {
	r := newRig(t)
	r.activate()
	r.mount()
	r.q.AddChain([]virtiotest.Desc{{Addr: r.mem.Size() - 8, Len: 64}}) // runs off the end of RAM
	r.dev.Notify(0)
	deadline := time.Now().Add(10 * time.Second)
	for r.dev.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("a chain outside guest RAM was not reported")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("reported: %v", r.dev.Err())
	r.dev.Reset()
	r.activate()
	r.mount()
	r.openHello()
	if err := r.dev.Err(); err != nil {
		t.Errorf("error after reset: %v", err)
	}
}

func TestResetStopsUsingGuestMemoryAndReactivateStartsAFreshSession(t *testing.T) {
	r := newRig(t)
	held, release := r.holdReadReplies()
	r.activate()
	r.mount()
	r.openHello()

	// A read whose reply reaches the device only after the guest reset
	// it.
	reply := r.alloc.Get(4096)
	read := p9fstest.Tmsg(tRead, 50, uint32(2), uint64(0), uint32(4096))
	req := r.alloc.Get(uint64(len(read)))
	if err := r.mem.WriteAt(read, req); err != nil {
		t.Fatal(err)
	}
	r.q.AddChain([]virtiotest.Desc{{Addr: req, Len: uint32(len(read))}, {Addr: reply, Len: 4096, Flags: virtiotest.FlagWrite}})
	r.dev.Notify(0)
	<-held
	r.dev.Reset()
	close(release)
	r.dev.bg.Wait() // the late reply has been handed to the device
	if u, ok := r.q.Next(); ok {
		t.Errorf("used entry %+v published after reset", u)
	}
	buf := make([]byte, 4096)
	if err := r.mem.ReadAt(buf, reply); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, make([]byte, 4096)) {
		t.Error("the reply buffer was written after reset")
	}

	r.activate()
	// Fids of the old session are gone.
	walk := p9fstest.Tmsg(tWalk, 60, uint32(1), uint32(3), uint16(0))
	r.send(walk, 64)
	if errno := r.lerror(r.wait(), walk); errno != errnoEBADF {
		t.Errorf("walk from the old session's fid: errno %d, want EBADF", errno)
	}
	r.mount()
	r.openHello()
}

func TestCloseLeavesNoGoroutinesBehind(t *testing.T) {
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "hello"), []byte(hostContent), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := p9fs.New(share, p9fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	before := runtime.NumGoroutine()

	dev, err := New("share", srv)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, share: share, srv: srv, mem: virtiotest.Memory(t, 16<<20), alloc: virtiotest.NewAlloc(0x1000, 16<<20), irq: virtiotest.NewInterrupts(), dev: dev}
	for range 3 {
		r.activate()
		r.mount()
		r.openHello()
		r.ok(p9fstest.Tmsg(tRead, 4, uint32(2), uint64(0), uint32(4096)), rRead)
		// Left open: Reset and Close must clean up after the guest.
		r.send(p9fstest.Tmsg(tRead, 5, uint32(2), uint64(0), uint32(4096)), 4096)
		r.dev.Reset()
	}
	r.activate()
	r.mount()
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dev.Activate(r.mem, 0, []*virtio.Queue{r.q.Device(t, 0)}, r.irq); err == nil {
		t.Error("activate after close succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNotifyOfAnInactiveDeviceOrAnotherQueueIsHarmless(t *testing.T) {
	r := newRig(t)
	r.dev.Notify(0)
	r.dev.Notify(5)
	r.dev.Reset()
	r.activate()
	r.dev.Notify(-1)
	r.dev.Notify(1)
	r.mount()
}

// blockingIRQ is a transport whose interrupt delivery waits for release,
// as one does that holds a lock Reset is called under.
type blockingIRQ struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blockingIRQ) Queue(int) error {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	return nil
}

func (b *blockingIRQ) Config() error { return nil }

func TestResetDoesNotWaitForAnInterruptInProgress(t *testing.T) {
	r := newRig(t)
	irq := &blockingIRQ{entered: make(chan struct{}, 1), release: make(chan struct{})}
	r.q = virtiotest.NewQueue(r.mem, r.alloc, QueueSize)
	if err := r.dev.Activate(r.mem, virtio.FeatureVersion1, []*virtio.Queue{r.q.Device(t, virtio.FeatureVersion1)}, irq); err != nil {
		t.Fatal(err)
	}
	// Answered at once from the queue's own goroutine, which then blocks
	// raising the interrupt.
	r.send(p9fstest.Tmsg(250, 1, uint32(1)), 64)
	<-irq.entered
	reset := make(chan struct{})
	go func() { r.dev.Reset(); close(reset) }()
	select {
	case <-reset:
	case <-time.After(5 * time.Second):
		t.Fatal("Reset waited for an interrupt the transport could not deliver")
	}
	close(irq.release)
}
