package net_test

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// The link the tests build: the guest at .2 behind the device, the
// namespace's kernel at .1 on the TAP.
var (
	guestMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
	hostMAC  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	guestIP  = netip.MustParseAddr("10.0.0.2")
	hostIP   = netip.MustParseAddr("10.0.0.1")
)

const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	protoICMP = 1
	protoTCP  = 6

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

func ether(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], typ)
	return append(f, payload...)
}

// arpRequest is the guest asking who has ip.
func arpRequest(ip netip.Addr) []byte {
	a := make([]byte, 28)
	binary.BigEndian.PutUint16(a[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(a[2:], 0x0800) // IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 1) // request
	copy(a[8:], guestMAC)
	copy(a[14:], guestIP.AsSlice())
	copy(a[24:], ip.AsSlice())
	return ether(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, guestMAC, etherARP, a)
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(sum uint32, b []byte) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// pseudo is the sum of the IPv4 pseudo header for a transport checksum.
func pseudo(src, dst netip.Addr, proto byte, n int) uint32 {
	var sum uint32
	for _, a := range [][4]byte{src.As4(), dst.As4()} {
		sum += uint32(binary.BigEndian.Uint16(a[0:])) + uint32(binary.BigEndian.Uint16(a[2:]))
	}
	return sum + uint32(proto) + uint32(n)
}

// guestIPv4 wraps payload from the guest to the host in IPv4 and Ethernet.
func guestIPv4(proto byte, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[6:], 0x4000) // don't fragment
	h[8], h[9] = 64, proto
	copy(h[12:], guestIP.AsSlice())
	copy(h[16:], hostIP.AsSlice())
	binary.BigEndian.PutUint16(h[10:], checksum(0, h))
	return ether(hostMAC, guestMAC, etherIPv4, append(h, payload...))
}

func icmpEcho(id, seq uint16, data []byte) []byte {
	m := make([]byte, 8, 8+len(data))
	m[0] = 8 // echo request
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	m = append(m, data...)
	binary.BigEndian.PutUint16(m[2:], checksum(0, m))
	return guestIPv4(protoICMP, m)
}

// tcpSegment is a segment from the guest to the host; mss > 0 adds the
// MSS option (for a SYN).
func tcpSegment(sport, dport uint16, seq, ack uint32, flags byte, mss uint16) []byte {
	return tcpData(sport, dport, seq, ack, flags, mss, nil, false)
}

// tcpData is tcpSegment with a payload; partial leaves in the checksum
// field only the pseudo-header sum, for the other side to finish
// (NEEDS_CSUM), as a stack with checksum offload does.
func tcpData(sport, dport uint16, seq, ack uint32, flags byte, mss uint16, payload []byte, partial bool) []byte {
	hl := 20
	if mss > 0 {
		hl = 24
	}
	s := make([]byte, hl, hl+len(payload))
	binary.BigEndian.PutUint16(s[0:], sport)
	binary.BigEndian.PutUint16(s[2:], dport)
	binary.BigEndian.PutUint32(s[4:], seq)
	binary.BigEndian.PutUint32(s[8:], ack)
	s[12] = byte(hl/4) << 4
	s[13] = flags
	binary.BigEndian.PutUint16(s[14:], 65535)
	if mss > 0 {
		s[20], s[21] = 2, 4
		binary.BigEndian.PutUint16(s[22:], mss)
	}
	s = append(s, payload...)
	sum := pseudo(guestIP, hostIP, protoTCP, len(s))
	if partial {
		binary.BigEndian.PutUint16(s[16:], ^checksum(sum, nil))
	} else {
		binary.BigEndian.PutUint16(s[16:], checksum(sum, s))
	}
	return guestIPv4(protoTCP, s)
}

// ipv4 is an IPv4 packet parsed out of an Ethernet frame.
type ipv4 struct {
	header, payload []byte
	proto           byte
	src, dst        netip.Addr
}

func parseIPv4(frame []byte) (ipv4, bool) {
	if len(frame) < 34 || binary.BigEndian.Uint16(frame[12:]) != etherIPv4 {
		return ipv4{}, false
	}
	p := frame[14:]
	hl := int(p[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(p[2:]))
	if p[0]>>4 != 4 || hl < 20 || total < hl || total > len(p) {
		return ipv4{}, false
	}
	return ipv4{
		header:  p[:hl],
		payload: p[hl:total],
		proto:   p[9],
		src:     netip.AddrFrom4([4]byte(p[12:16])),
		dst:     netip.AddrFrom4([4]byte(p[16:20])),
	}, true
}

// tcp is a TCP segment parsed out of an IPv4 packet.
type tcp struct {
	sport, dport uint16
	seq          uint32
	flags        byte
	payload      []byte
}

func parseTCP(ip ipv4) (tcp, bool) {
	s := ip.payload
	if ip.proto != protoTCP || len(s) < 20 || int(s[12]>>4)*4 > len(s) {
		return tcp{}, false
	}
	return tcp{
		sport:   binary.BigEndian.Uint16(s[0:]),
		dport:   binary.BigEndian.Uint16(s[2:]),
		seq:     binary.BigEndian.Uint32(s[4:]),
		flags:   s[13],
		payload: s[int(s[12]>>4)*4:],
	}, true
}
