package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/vmm/virtio"
)

// Request types (virtio 1.2 §5.2.6). Types not listed, discard and write
// zeroes among them, are answered UNSUPP.
const (
	typeIn    = 0
	typeOut   = 1
	typeFlush = 4
	typeGetID = 8
)

// Request statuses, the last byte the device writes.
const (
	statusOK     = 0
	statusIOErr  = 1
	statusUnsupp = 2
)

// headerLen is struct virtio_blk_req's type, reserved and sector.
const headerLen = 16

// iovMax is the most buffers one preadv/pwritev takes (IOV_MAX).
const iovMax = 1024

// serve carries out the request in c and returns how many bytes of its
// writable buffers the used ring reports. The layout is free (virtio 1.x
// has no framing rules): the header is the first 16 readable bytes, the
// status the last writable byte, and the data what lies between.
func (d *Device) serve(c *virtio.Chain, writeThrough bool) uint32 {
	w := c.WritableLen()
	if w == 0 {
		// Nowhere to put a status: the request cannot even fail visibly.
		return 0
	}
	status := d.execute(c, w-1, writeThrough)
	putLast(c.Writable, status)
	// The status closes the writable area, so all of it counts as
	// written; a 4 GiB chain is absurd, but must not wrap.
	return uint32(min(w, math.MaxUint32))
}

// execute runs the request whose device-writable data is the first
// dataLen writable bytes, and returns its status.
func (d *Device) execute(c *virtio.Chain, dataLen int, writeThrough bool) byte {
	var hdr [headerLen]byte
	if gather(hdr[:], c.Readable) < headerLen {
		return statusIOErr
	}
	typ := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])
	switch typ {
	case typeIn:
		return d.transfer(span(c.Writable, 0, dataLen), dataLen, sector, false)
	case typeOut:
		if d.readOnly {
			return statusIOErr
		}
		n := c.ReadableLen() - headerLen
		if st := d.transfer(span(c.Readable, headerLen, c.ReadableLen()), n, sector, true); st != statusOK || !writeThrough {
			return st
		}
		return d.flush()
	case typeFlush:
		return d.flush()
	case typeGetID:
		if dataLen < SerialLen {
			return statusIOErr
		}
		// Zero-padded, and no NUL when all 20 bytes are used.
		bufs := span(c.Writable, 0, dataLen)
		scatter(bufs, d.serial[:])
		for _, b := range span(c.Writable, SerialLen, dataLen) {
			clear(b)
		}
		return statusOK
	}
	return statusUnsupp
}

// transfer moves n bytes between bufs and the disk at sector, after
// checking the range: the guest never reaches past the capacity, and only
// whole sectors move.
func (d *Device) transfer(bufs [][]byte, n int, sector uint64, write bool) byte {
	if n%SectorSize != 0 || sector > d.sectors || uint64(n/SectorSize) > d.sectors-sector {
		return statusIOErr
	}
	op := unix.Preadv
	if write {
		op = unix.Pwritev
	}
	if err := d.vectored(bufs, int64(sector*SectorSize), op); err != nil {
		return statusIOErr
	}
	return statusOK
}

// vectored runs op until all of bufs moved, at most IOV_MAX buffers a
// call. A read that meets the end of the file (it shrank under us) fails.
func (d *Device) vectored(bufs [][]byte, off int64, op func(int, [][]byte, int64) (int, error)) error {
	var opErr error
	err := d.rc.Control(func(fd uintptr) {
		for len(bufs) > 0 {
			n, err := op(int(fd), bufs[:min(len(bufs), iovMax)], off)
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil:
				opErr = err
				return
			case n == 0:
				opErr = io.ErrUnexpectedEOF
				return
			}
			off += int64(n)
			bufs = advance(bufs, n)
		}
	})
	if err := errors.Join(err, opErr); err != nil {
		return fmt.Errorf("virtio-blk %s at %d: %w", d.file.Name(), off, err)
	}
	return nil
}

func (d *Device) flush() byte {
	var syncErr error
	if err := d.rc.Control(func(fd uintptr) { syncErr = unix.Fdatasync(int(fd)) }); err != nil || syncErr != nil {
		return statusIOErr
	}
	return statusOK
}

// span returns bytes [from, to) of the stream bufs make up, as slices of
// the same memory, leaving out empty ones (an all-empty batch would look
// like end of file to preadv).
func span(bufs []virtio.Buffer, from, to int) [][]byte {
	var out [][]byte
	pos := 0
	for _, b := range bufs {
		start, end := max(from-pos, 0), min(to-pos, len(b))
		pos += len(b)
		if start < end {
			out = append(out, b[start:end])
		}
		if pos >= to {
			break
		}
	}
	return out
}

// advance drops the first n bytes from bufs, which span made and so may be
// changed in place.
func advance(bufs [][]byte, n int) [][]byte {
	for n > 0 && len(bufs) > 0 {
		k := min(n, len(bufs[0]))
		bufs[0] = bufs[0][k:]
		n -= k
		if len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	return bufs
}

// gather copies the start of the stream bufs make up into p and returns
// how many bytes there were.
func gather(p []byte, bufs []virtio.Buffer) int {
	n := 0
	for _, b := range bufs {
		if n == len(p) {
			break
		}
		n += copy(p[n:], b)
	}
	return n
}

// scatter copies p to the start of the stream bufs make up.
func scatter(bufs [][]byte, p []byte) {
	for _, b := range bufs {
		if len(p) == 0 {
			return
		}
		p = p[copy(b, p):]
	}
}

// putLast sets the last byte of the stream bufs make up.
func putLast(bufs []virtio.Buffer, v byte) {
	for i := len(bufs) - 1; i >= 0; i-- {
		if b := bufs[i]; len(b) > 0 {
			b[len(b)-1] = v
			return
		}
	}
}
