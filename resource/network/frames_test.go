package network

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// vnetHdrLen is the virtio-net header in front of every frame on a TAP or
// macvtap with IFF_VNET_HDR, at the kernel's default size.
const vnetHdrLen = 10

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func ethernet(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	f := make([]byte, vnetHdrLen, vnetHdrLen+14+len(payload))
	f = append(f, dst...)
	f = append(f, src...)
	f = binary.BigEndian.AppendUint16(f, etherType)
	return append(f, payload...)
}

// arpRequest asks who has target, as the guest would.
func arpRequest(srcMAC net.HardwareAddr, src, target net.IP) []byte {
	p := []byte{0, 1, 8, 0, 6, 4, 0, 1} // Ethernet, IPv4, request
	p = append(p, srcMAC...)
	p = append(p, src.To4()...)
	p = append(p, make([]byte, 6)...)
	p = append(p, target.To4()...)
	return ethernet(broadcast, srcMAC, 0x0806, p)
}

// isARPReply reports whether frame (without the vnet header) answers who
// has ip, sent to mac.
func isARPReply(frame []byte, mac net.HardwareAddr, ip net.IP) bool {
	if len(frame) < 14+28 || !bytes.Equal(frame[0:6], mac) || binary.BigEndian.Uint16(frame[12:14]) != 0x0806 {
		return false
	}
	arp := frame[14:]
	return binary.BigEndian.Uint16(arp[6:8]) == 2 && bytes.Equal(arp[14:18], ip.To4())
}

// icmpEcho is an IPv4 ICMP echo request.
func icmpEcho(srcMAC, dstMAC net.HardwareAddr, src, dst net.IP, id, seq uint16) []byte {
	icmp := []byte{8, 0, 0, 0}
	icmp = binary.BigEndian.AppendUint16(icmp, id)
	icmp = binary.BigEndian.AppendUint16(icmp, seq)
	icmp = append(icmp, []byte("joey network test")...)
	binary.BigEndian.PutUint16(icmp[2:4], checksum(icmp))
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0}
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+len(icmp)))
	ip = append(ip, src.To4()...)
	ip = append(ip, dst.To4()...)
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip))
	return ethernet(dstMAC, srcMAC, 0x0800, append(ip, icmp...))
}

// isEchoReply reports whether frame answers the echo request id/seq.
func isEchoReply(frame []byte, from net.IP, id, seq uint16) bool {
	if len(frame) < 14+20+8 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 {
		return false
	}
	ip := frame[14:]
	hl := int(ip[0]&0xf) * 4
	if ip[9] != 1 || !bytes.Equal(ip[12:16], from.To4()) || len(ip) < hl+8 {
		return false
	}
	icmp := ip[hl:]
	return icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:6]) == id && binary.BigEndian.Uint16(icmp[6:8]) == seq
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// roundTrip writes frame into the first queue and waits for a frame on
// any queue (a multi-queue device spreads frames by flow) that match
// accepts; other traffic (IPv6 housekeeping of the peer) is skipped.
func roundTrip(t *testing.T, queues []*os.File, frame []byte, match func([]byte) bool) {
	t.Helper()
	found := make(chan struct{}, len(queues))
	errs := make(chan error, len(queues))
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Second)
	for _, q := range queues {
		if err := q.SetReadDeadline(deadline); err != nil {
			t.Fatalf("queue file cannot wait (not pollable?): %v", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 65536)
			for {
				n, err := q.Read(buf)
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						errs <- err
					}
					return
				}
				if n > vnetHdrLen && match(buf[vnetHdrLen:n]) {
					found <- struct{}{}
					return
				}
			}
		}()
	}
	_, werr := queues[0].Write(frame)
	got := false
	if werr == nil {
		select {
		case <-found:
			got = true
		case <-time.After(time.Until(deadline) + 100*time.Millisecond):
		}
	}
	for _, q := range queues {
		q.SetReadDeadline(time.Now()) // stop the other readers
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("read: %v", err)
	}
	if werr != nil {
		t.Fatalf("write frame: %v", werr)
	}
	if !got {
		t.Fatal("no answer came back through the device within 3 s")
	}
}
