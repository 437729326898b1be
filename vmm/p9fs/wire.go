package p9fs

import (
	"encoding/binary"

	"github.com/hugelgupf/p9/linux"
)

// The few pieces of the 9P wire format this package reads itself; the
// library decodes everything else.
const (
	// headerLen is size[4] type[1] tag[2].
	headerLen = 7
	// maxMessage is the library's own ceiling on a message.
	maxMessage = 4 << 20
	// noTag is the tag of Tversion/Rversion.
	noTag = 0xffff
)

// Message types this package looks at (9P2000.L).
const (
	msgRlerror      = 7
	msgTsetattr     = 26
	msgTxattrwalk   = 30
	msgTxattrcreate = 32
	msgTgetlock     = 54
	msgTversion     = 100
	msgRversion     = 101
	msgTattach      = 104
)

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// frameTag is the tag of a message of at least headerLen bytes.
func frameTag(frame []byte) uint16 { return binary.LittleEndian.Uint16(frame[5:]) }

// Rlerror encodes Rlerror{errno} for tag: the virtio-9p device answers
// with it a request it cannot hand to the server or a reply that does not
// fit the guest's buffers.
func Rlerror(tag uint16, errno uint32) []byte { return rlerror(tag, linux.Errno(errno)) }

// rlerror encodes Rlerror{ecode} for tag.
func rlerror(tag uint16, errno linux.Errno) []byte {
	b := make([]byte, headerLen+4)
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	b[4] = msgRlerror
	binary.LittleEndian.PutUint16(b[5:], tag)
	binary.LittleEndian.PutUint32(b[7:], uint32(errno))
	return b
}

// attachUID reads n_uname from a Tattach body
// (fid[4] afid[4] uname[s] aname[s] n_uname[4]); ok is false when the
// message is too short to hold it.
func attachUID(frame []byte) (uid uint32, ok bool) {
	b := frame[headerLen:]
	if len(b) < 8 {
		return 0, false
	}
	b = b[8:]
	for range 2 { // uname, aname
		if len(b) < 2 {
			return 0, false
		}
		n := int(binary.LittleEndian.Uint16(b))
		if len(b) < 2+n {
			return 0, false
		}
		b = b[2+n:]
	}
	if len(b) < 4 {
		return 0, false
	}
	return le32(b), true
}

// Tsetattr layout after the header: fid[4] valid[4] mode[4] uid[4] gid[4]
// size[8] atime[16] mtime[16].
const (
	setattrValidOff = headerLen + 4
	setattrModeOff  = setattrValidOff + 4
	setattrSizeOff  = setattrModeOff + 12
	setattrLen      = setattrSizeOff + 8 + 32
	// setattrMode and setattrSize are the valid bits for mode and size.
	setattrMode = 0x1
	setattrSize = 0x8
	// carriedModeFlag marks a size field that carries the setuid and
	// setgid bits the library's decoder masks off the mode.
	carriedModeFlag = 1 << 63
	carriedModeBits = 0o6000
)

// carryModeBits rewrites a Tsetattr in place so the setuid/setgid bits of
// its mode survive the library's decoder, which keeps only 01777: when
// the size is not being set its field is unused, so it carries them. The
// field is always overwritten in that case, so nothing the guest put there
// can look like carried bits.
func carryModeBits(frame []byte) {
	if len(frame) < setattrLen {
		return // the library rejects it
	}
	valid := le32(frame[setattrValidOff:])
	if valid&setattrSize != 0 {
		return
	}
	var carried uint64
	if mode := le32(frame[setattrModeOff:]); valid&setattrMode != 0 && mode&carriedModeBits != 0 {
		carried = carriedModeFlag | uint64(mode&carriedModeBits)
	}
	binary.LittleEndian.PutUint64(frame[setattrSizeOff:], carried)
}
