// Package p9fstest is test support for the 9P server (vmm/p9fs) and the
// virtio-9p device in front of it (vmm/virtio/p9): both drive the server
// with hand-built frames, so that they can send what no well-behaved
// client library would. Only tests import it.
package p9fstest

import (
	"encoding/binary"
	"fmt"
)

// Tmsg encodes a 9P2000.L T-message of type typ under tag, its body the
// fields in order; each is a uint8, uint16, uint32, uint64 or string
// (9P's s: le16 length and bytes). Nothing is checked against the
// message's layout, so malformed messages are as easy to build as good
// ones.
func Tmsg(typ uint8, tag uint16, fields ...any) []byte {
	b := []byte{0, 0, 0, 0, typ, byte(tag), byte(tag >> 8)}
	for _, f := range fields {
		switch v := f.(type) {
		case uint8:
			b = append(b, v)
		case uint16:
			b = binary.LittleEndian.AppendUint16(b, v)
		case uint32:
			b = binary.LittleEndian.AppendUint32(b, v)
		case uint64:
			b = binary.LittleEndian.AppendUint64(b, v)
		case string:
			b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
			b = append(b, v...)
		default:
			panic(fmt.Sprintf("p9fstest.Tmsg: unsupported field type %T", f))
		}
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	return b
}
