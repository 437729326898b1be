package vsock

import "encoding/binary"

// hdrLen is struct virtio_vsock_hdr (virtio 1.2 §5.10.6): every packet
// starts with it, either way.
const hdrLen = 44

// Packet types (the type field). Stream is the only one: SEQPACKET needs
// VIRTIO_VSOCK_F_SEQPACKET, which is not offered.
const typeStream = 1

// Operations (the op field).
const (
	opInvalid       = 0
	opRequest       = 1
	opResponse      = 2
	opRST           = 3
	opShutdown      = 4
	opRW            = 5
	opCreditUpdate  = 6
	opCreditRequest = 7
)

// Shutdown flags (the flags field of OP_SHUTDOWN): the sender will
// receive, or send, no more.
const (
	shutdownRcv  = 1
	shutdownSend = 2
	shutdownBoth = shutdownRcv | shutdownSend
)

// header is struct virtio_vsock_hdr, all little endian.
type header struct {
	srcCID, dstCID   uint64
	srcPort, dstPort uint32
	len              uint32
	typ, op          uint16
	flags            uint32
	// bufAlloc and fwdCnt are the sender's credit: its receive buffer
	// size and how many bytes its reader has consumed in all.
	bufAlloc, fwdCnt uint32
}

func (h *header) put(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], h.srcCID)
	le.PutUint64(b[8:], h.dstCID)
	le.PutUint32(b[16:], h.srcPort)
	le.PutUint32(b[20:], h.dstPort)
	le.PutUint32(b[24:], h.len)
	le.PutUint16(b[28:], h.typ)
	le.PutUint16(b[30:], h.op)
	le.PutUint32(b[32:], h.flags)
	le.PutUint32(b[36:], h.bufAlloc)
	le.PutUint32(b[40:], h.fwdCnt)
}

func parseHeader(b []byte) header {
	le := binary.LittleEndian
	return header{
		srcCID:   le.Uint64(b[0:]),
		dstCID:   le.Uint64(b[8:]),
		srcPort:  le.Uint32(b[16:]),
		dstPort:  le.Uint32(b[20:]),
		len:      le.Uint32(b[24:]),
		typ:      le.Uint16(b[28:]),
		op:       le.Uint16(b[30:]),
		flags:    le.Uint32(b[32:]),
		bufAlloc: le.Uint32(b[36:]),
		fwdCnt:   le.Uint32(b[40:]),
	}
}
