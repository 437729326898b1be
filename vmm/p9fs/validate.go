package p9fs

import "encoding/binary"

// layouts are the bodies of the T-messages the library handles, field by
// field: '1', '2', '4', '8' fixed-size fields, 's' a string (le16 length,
// bytes), 'W' a walk's name list (le16 count, strings), 'D' Twrite's
// count[4] and exactly that many bytes. The library answers a message it
// cannot decode with the tag NOTAG, which no transport can route, so the
// session checks every message first and answers a bad one with its own
// tag. The Google extensions are what the library's own client sends.
var layouts = map[uint8]string{
	8:   "4",          // Tstatfs fid
	12:  "44",         // Tlopen fid flags
	14:  "4s444",      // Tlcreate fid name flags mode gid
	16:  "4ss4",       // Tsymlink fid name target gid
	18:  "4s4444",     // Tmknod dfid name mode major minor gid
	20:  "44s",        // Trename fid dfid name
	22:  "4",          // Treadlink fid
	24:  "48",         // Tgetattr fid mask
	26:  "4444488888", // Tsetattr fid valid mode uid gid size atime mtime
	40:  "484",        // Treaddir fid offset count
	50:  "4",          // Tfsync fid
	52:  "414884s",    // Tlock fid type flags start length proc client
	70:  "44s",        // Tlink dfid fid name
	72:  "4s44",       // Tmkdir dfid name mode gid
	74:  "4s4s",       // Trenameat olddfid oldname newdfid newname
	76:  "4s4",        // Tunlinkat dfid name flags
	100: "4s",         // Tversion msize version
	102: "4ss4",       // Tauth afid uname aname n_uname
	104: "44ss4",      // Tattach fid afid uname aname n_uname
	108: "2",          // Tflush oldtag
	110: "44W",        // Twalk fid newfid names
	116: "484",        // Tread fid offset count
	118: "48D",        // Twrite fid offset count data
	120: "4",          // Tclunk fid
	122: "4",          // Tremove fid
	126: "44W",        // Twalkgetattr fid newfid names
	128: "4s4444",     // Tucreate: Tlcreate uid
	130: "4s444",      // Tumkdir: Tmkdir uid
	132: "4s44444",    // Tumknod: Tmknod uid
	134: "4ss44",      // Tusymlink: Tsymlink uid
}

// wellFormed reports whether body holds every field of layout.
func wellFormed(layout string, body []byte) bool {
	str := func() bool {
		if len(body) < 2 {
			return false
		}
		n := 2 + int(binary.LittleEndian.Uint16(body))
		if len(body) < n {
			return false
		}
		body = body[n:]
		return true
	}
	for _, c := range layout {
		switch c {
		case '1', '2', '4', '8':
			n := int(c - '0')
			if len(body) < n {
				return false
			}
			body = body[n:]
		case 's':
			if !str() {
				return false
			}
		case 'W':
			if len(body) < 2 {
				return false
			}
			n := int(binary.LittleEndian.Uint16(body))
			body = body[2:]
			for range n {
				if !str() {
					return false
				}
			}
		case 'D':
			return len(body) >= 4 && uint64(binary.LittleEndian.Uint32(body)) == uint64(len(body)-4)
		}
	}
	return true
}
