package blk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joeyrt/joey/vmm/memory"
	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/blk"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

const (
	ramSize = 8 << 20
	timeout = 5 * time.Second
	sector  = blk.SectorSize
)

// Request types and statuses, as a driver spells them.
const (
	tIn          = 0
	tOut         = 1
	tFlush       = 4
	tGetID       = 8
	tDiscard     = 11
	tWriteZeroes = 13

	sOK     = 0
	sIOErr  = 1
	sUnsupp = 2
)

// rig is a disk image, the device on it and a simulated driver.
type rig struct {
	t     *testing.T
	path  string
	dev   *blk.Device
	mem   *memory.Memory
	alloc *virtiotest.Alloc
	drv   *virtiotest.Queue
	irq   *virtiotest.Interrupts
}

// image writes a file of n bytes where every sector holds its own number,
// so a read from the wrong offset shows.
func image(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i/sector) ^ byte(i)
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newRig(t *testing.T, sectors int, opts blk.Options, flag int) *rig {
	t.Helper()
	// Before the device, so its cleanup runs after the device's Close.
	mem := virtiotest.Memory(t, ramSize)
	path := image(t, sectors*sector)
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := blk.New(f, opts)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Error(err)
		}
	})
	r := &rig{t: t, path: path, dev: dev, mem: mem, alloc: virtiotest.NewAlloc(0x1000, ramSize)}
	r.activate(dev.Features() | blk.FeatureFlush)
	return r
}

// activate lays out a fresh queue and starts the device on it, as a driver
// does after a reset.
func (r *rig) activate(features uint64) {
	r.t.Helper()
	r.drv = virtiotest.NewQueue(r.mem, r.alloc, 64)
	r.irq = virtiotest.NewInterrupts()
	q := r.drv.Device(r.t, features|virtio.FeatureIndirectDesc)
	if err := r.dev.Activate(r.mem, features, []*virtio.Queue{q}, r.irq); err != nil {
		r.t.Fatal(err)
	}
}

func header(typ uint32, sec uint64) []byte {
	h := make([]byte, 16)
	binary.LittleEndian.PutUint32(h[0:], typ)
	binary.LittleEndian.PutUint64(h[8:], sec)
	return h
}

// result is what came back for one request.
type result struct {
	status  byte
	data    []byte // the writable bytes before the status
	written uint32
}

// submit sends a chain of the readable buffers and writable buffers of the
// given lengths, kicks, and waits for it to come back.
func (r *rig) submit(readable [][]byte, writable []int) virtiotest.Used {
	r.t.Helper()
	head := r.drv.Add(readable, writable)
	r.dev.Notify(0)
	u := r.drv.Wait(r.t, timeout)
	if u.Head != head {
		r.t.Fatalf("used head %d, want %d", u.Head, head)
	}
	return u
}

// do sends a well-formed request: header, out data, in buffers of inLens,
// and a status byte of its own.
func (r *rig) do(typ uint32, sec uint64, out []byte, inLens ...int) result {
	r.t.Helper()
	readable := [][]byte{header(typ, sec)}
	if out != nil {
		readable = append(readable, out)
	}
	u := r.submit(readable, append(inLens, 1))
	if len(u.Data) == 0 {
		r.t.Fatalf("request came back with nothing written")
	}
	return result{status: u.Data[len(u.Data)-1], data: u.Data[:len(u.Data)-1], written: u.Written}
}

func (r *rig) file() []byte {
	r.t.Helper()
	b, err := os.ReadFile(r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func TestWritesLandAtTheSectorOffsetAndReadsReturnTheFile(t *testing.T) {
	r := newRig(t, 64, blk.Options{}, os.O_RDWR)
	data := pattern(2*sector, 0x40)
	// The data spans three buffers that do not follow sector boundaries.
	res := r.do(tOut, 5, nil)
	if res.status != sOK {
		t.Fatalf("empty write: status %d", res.status)
	}
	u := r.submit([][]byte{header(tOut, 5), data[:100], data[100:700], data[700:]}, []int{1})
	if st := u.Data[len(u.Data)-1]; st != sOK || u.Written != 1 {
		t.Fatalf("write: status %d written %d, want OK and 1", st, u.Written)
	}
	img := r.file()
	if !bytes.Equal(img[5*sector:7*sector], data) {
		t.Fatal("file does not hold the written data at sector 5")
	}
	want := image(t, 64*sector)
	orig, _ := os.ReadFile(want)
	if !bytes.Equal(img[:5*sector], orig[:5*sector]) || !bytes.Equal(img[7*sector:], orig[7*sector:]) {
		t.Fatal("write touched sectors outside 5..6")
	}

	// Change the file behind the device's back: reads go to the file.
	img[9*sector+3] = 0xEE
	if err := os.WriteFile(r.path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	res = r.do(tIn, 4, nil, 300, 3*sector-300)
	if res.status != sOK {
		t.Fatalf("read: status %d", res.status)
	}
	if !bytes.Equal(res.data, img[4*sector:7*sector]) {
		t.Fatal("read of sectors 4..6 does not match the file")
	}
	if res.written != 3*sector+1 {
		t.Fatalf("read reports %d bytes written, want data and status %d", res.written, 3*sector+1)
	}
	if res = r.do(tIn, 9, nil, sector); res.status != sOK || res.data[3] != 0xEE {
		t.Fatalf("read after the file changed: status %d byte %#x", res.status, res.data[3])
	}
	if r.irq.Count(0) == 0 {
		t.Fatal("no interrupt for completed requests")
	}
}

func TestReadOnlyDiskFailsWritesAndLeavesTheFileAlone(t *testing.T) {
	tests := []struct {
		name string
		flag int
	}{
		{"file opened read-write", os.O_RDWR},
		{"file opened read-only", os.O_RDONLY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, 16, blk.Options{ReadOnly: true}, tt.flag)
			if r.dev.Features()&blk.FeatureRO == 0 {
				t.Fatal("read-only disk does not offer VIRTIO_BLK_F_RO")
			}
			before := r.file()
			if res := r.do(tOut, 2, pattern(sector, 1)); res.status != sIOErr {
				t.Fatalf("write to a read-only disk: status %d, want IOERR", res.status)
			}
			if !bytes.Equal(r.file(), before) {
				t.Fatal("write to a read-only disk changed the file")
			}
			if res := r.do(tIn, 2, nil, sector); res.status != sOK || !bytes.Equal(res.data, before[2*sector:3*sector]) {
				t.Fatalf("read from a read-only disk: status %d", res.status)
			}
			if res := r.do(tFlush, 0, nil); res.status != sOK {
				t.Fatalf("flush of a read-only disk: status %d", res.status)
			}
		})
	}
	if rw := newRig(t, 1, blk.Options{}, os.O_RDWR); rw.dev.Features()&blk.FeatureRO != 0 {
		t.Fatal("writable disk offers VIRTIO_BLK_F_RO")
	}
}

func TestNewRefusesDisksItCannotServe(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, size int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		path string
		flag int
		opts blk.Options
		want string
	}{
		{"size not a multiple of 512", mk("odd", 1000), os.O_RDWR, blk.Options{}, "size 1000 bytes is not a non-zero multiple of the 512-byte sector"},
		{"empty file", mk("empty", 0), os.O_RDWR, blk.Options{}, "size 0 bytes"},
		{"serial over 20 bytes", mk("a", 512), os.O_RDWR, blk.Options{Serial: strings.Repeat("s", 21)}, "is 21 bytes, at most 20 fit"},
		{"read-only file for a writable disk", mk("b", 512), os.O_RDONLY, blk.Options{}, "open it read-write or set ReadOnly"},
		{"file opened to append", mk("c", 512), os.O_RDWR | os.O_APPEND, blk.Options{}, "O_APPEND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.OpenFile(tt.path, tt.flag, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			d, err := blk.New(f, tt.opts)
			if err == nil {
				d.Close()
				t.Fatalf("New succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestFlushSucceedsWithOrWithoutTheFeature(t *testing.T) {
	r := newRig(t, 8, blk.Options{}, os.O_RDWR)
	if res := r.do(tFlush, 0, nil); res.status != sOK || res.written != 1 {
		t.Fatalf("flush: status %d written %d", res.status, res.written)
	}
	// Without FLUSH the device writes through; writes still succeed.
	r.dev.Reset()
	r.activate(blk.FeatureSegMax | blk.FeatureBlkSize)
	if res := r.do(tOut, 1, pattern(sector, 9)); res.status != sOK {
		t.Fatalf("write-through write: status %d", res.status)
	}
	if !bytes.Equal(r.file()[sector:2*sector], pattern(sector, 9)) {
		t.Fatal("write-through write did not reach the file")
	}
}

func TestGetIDReturnsTheSerialZeroPadded(t *testing.T) {
	tests := []struct {
		name   string
		serial string
		bufs   []int
		status byte
		want   []byte
	}{
		{"short serial", "disk-1", []int{20}, sOK, append([]byte("disk-1"), make([]byte, 14)...)},
		{"20 bytes, no NUL", "abcdefghij0123456789", []int{20}, sOK, []byte("abcdefghij0123456789")},
		{"no serial", "", []int{20}, sOK, make([]byte, 20)},
		{"split buffers, larger than needed", "split-serial", []int{5, 30}, sOK, append([]byte("split-serial"), make([]byte, 23)...)},
		{"buffer too small", "disk-1", []int{19}, sIOErr, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, 1, blk.Options{Serial: tt.serial}, os.O_RDWR)
			// Dirty buffers, so the padding has to be written.
			descs := []virtiotest.Desc{{Addr: r.alloc.Get(16), Len: 16}}
			if err := r.mem.WriteAt(header(tGetID, 0), descs[0].Addr); err != nil {
				t.Fatal(err)
			}
			for _, n := range append(tt.bufs, 1) {
				a := r.alloc.Get(uint64(n))
				if err := r.mem.WriteAt(bytes.Repeat([]byte{0xFF}, n), a); err != nil {
					t.Fatal(err)
				}
				descs = append(descs, virtiotest.Desc{Addr: a, Len: uint32(n), Flags: virtiotest.FlagWrite})
			}
			r.drv.AddChain(descs)
			r.dev.Notify(0)
			u := r.drv.Wait(t, timeout)
			if st := u.Data[len(u.Data)-1]; st != tt.status {
				t.Fatalf("status %d, want %d", st, tt.status)
			}
			if got := u.Data[:len(u.Data)-1]; tt.want != nil && !bytes.Equal(got, tt.want) {
				t.Fatalf("ID %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRequestsOutsideTheDiskFailWithIOErr(t *testing.T) {
	const sectors = 16
	tests := []struct {
		name   string
		typ    uint32
		sector uint64
		n      int
	}{
		{"read at the capacity", tIn, sectors, sector},
		{"read running past the end", tIn, sectors - 1, 2 * sector},
		{"write running past the end", tOut, sectors - 2, 3 * sector},
		{"sector far beyond", tIn, 1 << 40, sector},
		{"sector whose byte offset overflows", tOut, ^uint64(0) / 256, sector},
		{"largest sector", tIn, ^uint64(0), sector},
	}
	r := newRig(t, sectors, blk.Options{}, os.O_RDWR)
	before := r.file()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res result
			if tt.typ == tOut {
				res = r.do(tOut, tt.sector, pattern(tt.n, 3))
			} else {
				res = r.do(tIn, tt.sector, nil, tt.n)
			}
			if res.status != sIOErr {
				t.Fatalf("status %d, want IOERR", res.status)
			}
		})
	}
	if !bytes.Equal(r.file(), before) {
		t.Fatal("a refused write changed the file")
	}
	if res := r.do(tIn, sectors-1, nil, sector); res.status != sOK {
		t.Fatalf("read of the last sector: status %d", res.status)
	}
}

func TestPartialSectorRequestsFailWithIOErr(t *testing.T) {
	r := newRig(t, 8, blk.Options{}, os.O_RDWR)
	before := r.file()
	tests := []struct {
		name string
		res  func() result
	}{
		{"read of 100 bytes", func() result { return r.do(tIn, 0, nil, 100) }},
		{"read of 513 bytes", func() result { return r.do(tIn, 0, nil, 513) }},
		{"write of 511 bytes", func() result { return r.do(tOut, 1, pattern(511, 1)) }},
		{"write of 1.5 sectors", func() result { return r.do(tOut, 1, pattern(768, 1)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := tt.res(); res.status != sIOErr {
				t.Fatalf("status %d, want IOERR", res.status)
			}
		})
	}
	if !bytes.Equal(r.file(), before) {
		t.Fatal("a partial-sector write changed the file")
	}
}

func TestUnknownAndUnofferedRequestTypesAreUnsupported(t *testing.T) {
	r := newRig(t, 8, blk.Options{}, os.O_RDWR)
	for _, typ := range []uint32{tDiscard, tWriteZeroes, 2, 99, ^uint32(0)} {
		if res := r.do(typ, 0, nil); res.status != sUnsupp {
			t.Errorf("type %d: status %d, want UNSUPP", typ, res.status)
		}
	}
}

func TestMalformedRequestsGetIOErrOrComeBackEmpty(t *testing.T) {
	r := newRig(t, 8, blk.Options{}, os.O_RDWR)
	before := r.file()
	h := header(tOut, 1)
	tests := []struct {
		name     string
		readable [][]byte
		writable []int
		written  uint32
		status   int // -1: nothing written
	}{
		{"header of 8 bytes", [][]byte{h[:8]}, []int{1}, 1, sIOErr},
		{"no header at all", nil, []int{sector, 1}, sector + 1, sIOErr},
		{"no status byte", [][]byte{h, pattern(sector, 5)}, nil, 0, -1},
		{"only empty writable buffers", [][]byte{h, pattern(sector, 5)}, []int{0, 0}, 0, -1},
		{"header split over two buffers is fine", [][]byte{header(tIn, 2)[:5], header(tIn, 2)[5:]}, []int{sector + 1}, sector + 1, sOK},
		{"status after an empty buffer", [][]byte{header(tFlush, 0)}, []int{1, 0}, 1, sOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := r.submit(tt.readable, tt.writable)
			if u.Written != tt.written {
				t.Fatalf("written %d, want %d", u.Written, tt.written)
			}
			if tt.status >= 0 && u.Data[len(u.Data)-1] != byte(tt.status) {
				t.Fatalf("status %d, want %d", u.Data[len(u.Data)-1], tt.status)
			}
		})
	}
	if !bytes.Equal(r.file(), before) {
		t.Fatal("a malformed request changed the file")
	}
}

func TestBrokenChainStopsTheQueueUntilReset(t *testing.T) {
	r := newRig(t, 8, blk.Options{}, os.O_RDWR)
	// A data buffer reaching past guest RAM: the device must not touch
	// it, nor crash; it gives up on the queue.
	r.drv.AddChain([]virtiotest.Desc{
		{Addr: r.alloc.Get(16), Len: 16},
		{Addr: ramSize - 256, Len: 4096, Flags: virtiotest.FlagWrite},
		{Addr: r.alloc.Get(1), Len: 1, Flags: virtiotest.FlagWrite},
	})
	r.dev.Notify(0)
	deadline := time.Now().Add(timeout)
	for r.dev.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("device did not report the broken ring")
		}
		time.Sleep(time.Millisecond)
	}
	if err := r.dev.Err(); !errors.Is(err, virtio.ErrBadChain) {
		t.Fatalf("Err = %v, want ErrBadChain", err)
	}
	if _, ok := r.drv.Next(); ok {
		t.Fatal("broken chain came back as used")
	}
	r.dev.Reset()
	if err := r.dev.Err(); err != nil {
		t.Fatalf("Err after Reset = %v", err)
	}
	r.activate(r.dev.Features())
	if res := r.do(tIn, 0, nil, sector); res.status != sOK {
		t.Fatalf("read after reset: status %d", res.status)
	}
}

func TestRequestWithMoreBuffersThanOneSyscallTakes(t *testing.T) {
	// IOV_MAX is 1024; 1100 buffers of one sector each need two preadv
	// calls, through an indirect table since the ring holds 64.
	const n = 1100
	r := newRig(t, n+4, blk.Options{}, os.O_RDWR)
	table := r.alloc.Get(16 * (n + 2))
	put := func(i int, d virtiotest.Desc) {
		var b [16]byte
		binary.LittleEndian.PutUint64(b[0:], d.Addr)
		binary.LittleEndian.PutUint32(b[8:], d.Len)
		binary.LittleEndian.PutUint16(b[12:], d.Flags)
		binary.LittleEndian.PutUint16(b[14:], d.Next)
		if err := r.mem.WriteAt(b[:], table+16*uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	hdr := r.alloc.Get(16)
	if err := r.mem.WriteAt(header(tIn, 3), hdr); err != nil {
		t.Fatal(err)
	}
	put(0, virtiotest.Desc{Addr: hdr, Len: 16, Flags: virtiotest.FlagNext, Next: 1})
	data := r.alloc.Get(n * sector)
	for i := 0; i < n; i++ {
		put(i+1, virtiotest.Desc{Addr: data + uint64(i)*sector, Len: sector, Flags: virtiotest.FlagWrite | virtiotest.FlagNext, Next: uint16(i + 2)})
	}
	status := r.alloc.Get(1)
	put(n+1, virtiotest.Desc{Addr: status, Len: 1, Flags: virtiotest.FlagWrite})
	r.drv.AddChain([]virtiotest.Desc{{Addr: table, Len: 16 * (n + 2), Flags: virtiotest.FlagIndirect}})
	r.dev.Notify(0)
	u := r.drv.Wait(t, timeout)
	if u.Written != n*sector+1 {
		t.Fatalf("written %d, want %d", u.Written, n*sector+1)
	}
	got := make([]byte, n*sector+1)
	if err := r.mem.ReadAt(got[:n*sector], data); err != nil {
		t.Fatal(err)
	}
	if err := r.mem.ReadAt(got[n*sector:], status); err != nil {
		t.Fatal(err)
	}
	if got[n*sector] != sOK {
		t.Fatalf("status %d", got[n*sector])
	}
	if !bytes.Equal(got[:n*sector], r.file()[3*sector:(3+n)*sector]) {
		t.Fatal("data read through 1100 buffers does not match the file")
	}
}

func TestConfigSpaceDescribesTheDisk(t *testing.T) {
	r := newRig(t, 12345, blk.Options{}, os.O_RDWR)
	if r.dev.Type() != virtio.TypeBlock || len(r.dev.QueueSizes()) != 1 {
		t.Fatalf("type %v queues %v", r.dev.Type(), r.dev.QueueSizes())
	}
	read := func(off uint64, n int) []byte {
		b := bytes.Repeat([]byte{0xAA}, n)
		r.dev.ReadConfig(off, b)
		return b
	}
	if got := binary.LittleEndian.Uint64(read(0, 8)); got != 12345 || r.dev.Capacity() != 12345 {
		t.Errorf("capacity %d (Capacity() %d), want 12345", got, r.dev.Capacity())
	}
	if got := binary.LittleEndian.Uint32(read(12, 4)); got != blk.QueueSize-2 {
		t.Errorf("seg_max %d, want %d", got, blk.QueueSize-2)
	}
	if got := binary.LittleEndian.Uint32(read(20, 4)); got != 512 {
		t.Errorf("blk_size %d, want 512", got)
	}
	// The guest may read a field a byte at a time.
	if got := read(1, 1)[0]; got != byte(12345>>8) {
		t.Errorf("capacity byte 1 = %#x", got)
	}
	if got := read(28, 8); !bytes.Equal(got, make([]byte, 8)) {
		t.Errorf("read across the end of the config = %x, want zeros", got)
	}
	if got := read(^uint64(0)-1, 4); !bytes.Equal(got, make([]byte, 4)) {
		t.Errorf("read at a wrapping offset = %x, want zeros", got)
	}
	r.dev.WriteConfig(0, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if got := binary.LittleEndian.Uint64(read(0, 8)); got != 12345 {
		t.Errorf("capacity after a guest write %d, want it unchanged", got)
	}
	want := blk.FeatureSegMax | blk.FeatureBlkSize | blk.FeatureFlush
	if got := r.dev.Features(); got != want {
		t.Errorf("features %#x, want %#x", got, want)
	}
}

func TestResetStopsServingAndActivateStartsAfresh(t *testing.T) {
	r := newRig(t, 8, blk.Options{}, os.O_RDWR)
	if err := r.dev.Activate(r.mem, 0, []*virtio.Queue{r.drv.Device(t, 0)}, r.irq); err == nil {
		t.Fatal("second Activate without a reset succeeded")
	}
	r.dev.Reset()
	r.drv.Add([][]byte{header(tIn, 0)}, []int{sector, 1})
	r.dev.Notify(0)
	time.Sleep(50 * time.Millisecond)
	if u, ok := r.drv.Next(); ok {
		t.Fatalf("device served %+v after Reset", u)
	}
	r.dev.Reset() // twice is fine

	// A request made available before DRIVER_OK, without a kick, is
	// served once the device starts.
	drv := virtiotest.NewQueue(r.mem, r.alloc, 16)
	drv.Add([][]byte{header(tIn, 1)}, []int{sector, 1})
	if err := r.dev.Activate(r.mem, r.dev.Features(), []*virtio.Queue{drv.Device(t, 0)}, r.irq); err != nil {
		t.Fatal(err)
	}
	if u := drv.Wait(t, timeout); u.Data[len(u.Data)-1] != sOK || !bytes.Equal(u.Data[:sector], r.file()[sector:2*sector]) {
		t.Fatal("request queued before activation was not served correctly")
	}
	r.dev.Reset()
	if err := r.dev.Activate(r.mem, 0, []*virtio.Queue{nil}, r.irq); err == nil {
		t.Fatal("Activate without the request queue succeeded")
	}
	if err := r.dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.Activate(r.mem, 0, []*virtio.Queue{drv.Device(t, 0)}, r.irq); err == nil {
		t.Fatal("Activate after Close succeeded")
	}
	r.dev.Notify(0) // harmless once closed
}

func TestConcurrentKicksServeEveryRequestOnce(t *testing.T) {
	r := newRig(t, 8, blk.Options{}, os.O_RDWR)
	const n = 40
	heads := map[uint16]bool{}
	for i := 0; i < n; i++ {
		heads[r.drv.Add([][]byte{header(tIn, uint64(i%8))}, []int{sector, 1})] = true
	}
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 50; i++ {
				r.dev.Notify(0)
			}
			done <- struct{}{}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	for i := 0; i < n; i++ {
		u := r.drv.Wait(t, timeout)
		if !heads[u.Head] {
			t.Fatalf("head %d came back twice or was never sent", u.Head)
		}
		delete(heads, u.Head)
	}
}
