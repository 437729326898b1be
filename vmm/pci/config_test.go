package pci

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestReadOnlyHeaderFieldsIgnoreWritesOfAnyWidth(t *testing.T) {
	c := NewConfigSpace(Header{VendorID: 0x1af4, DeviceID: 0x1041, Revision: 1, Class: 0x020000, SubsystemVendorID: 0x1af4, SubsystemID: 0x1100})
	if _, err := c.AddCapability(CapVendor, []byte{4, 1, 2}); err != nil {
		t.Fatal(err)
	}
	var before [ConfigSize]byte
	c.Read(0, before[:])
	for off := 0; off < ConfigSize; off++ {
		for _, n := range []int{1, 2, 4} {
			ones := bytes.Repeat([]byte{0xff}, n)
			c.Write(off, ones)
		}
	}
	var after [ConfigSize]byte
	c.Read(0, after[:])
	writable := map[int]byte{
		RegCommand: commandWritable & 0xff, RegCommand + 1: commandWritable >> 8,
		RegCacheLine: 0xff, RegLatency: 0xff, RegInterruptLine: 0xff,
	}
	for off := range ConfigSize {
		if got, want := after[off], before[off]|writable[off]; got != want {
			t.Errorf("byte %#x = %#x after writing ones, want %#x", off, got, want)
		}
	}
}

func TestCapabilityListWalkVisitsEveryCapabilityInOrder(t *testing.T) {
	c := NewConfigSpace(Header{VendorID: 1})
	bodies := [][]byte{{16, 1, 0, 0}, {20, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {}}
	ids := []uint8{CapVendor, CapVendor, 0x05}
	var offs []int
	for i, b := range bodies {
		off, err := c.AddCapability(ids[i], b)
		if err != nil {
			t.Fatal(err)
		}
		if off%4 != 0 || off < capStart {
			t.Fatalf("capability at %#x: want dword aligned after the header", off)
		}
		offs = append(offs, off)
	}
	var st [2]byte
	c.Read(RegStatus, st[:])
	if binary.LittleEndian.Uint16(st[:])&StatusCapabilities == 0 {
		t.Fatal("status does not announce a capability list")
	}
	var b [1]byte
	c.Read(RegCapabilities, b[:])
	ptr := int(b[0])
	for i := range offs {
		if ptr != offs[i] {
			t.Fatalf("capability %d found at %#x, want %#x", i, ptr, offs[i])
		}
		var hdr [3]byte
		c.Read(ptr, hdr[:])
		if hdr[0] != ids[i] {
			t.Fatalf("capability %d has id %#x, want %#x", i, hdr[0], ids[i])
		}
		if len(bodies[i]) > 0 && hdr[2] != bodies[i][0] {
			t.Fatalf("capability %d body starts %#x, want %#x", i, hdr[2], bodies[i][0])
		}
		ptr = int(hdr[1])
	}
	if ptr != 0 {
		t.Fatalf("list does not end after the last capability: next %#x", ptr)
	}
}

func TestAddCapabilityFailsWhenConfigSpaceIsFull(t *testing.T) {
	c := NewConfigSpace(Header{})
	body := make([]byte, 62) // 64 bytes a capability
	for range (ConfigSize - capStart) / 64 {
		if _, err := c.AddCapability(CapVendor, body); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.AddCapability(CapVendor, nil); err == nil {
		t.Fatal("a capability was placed past the end of config space")
	}
}

func TestAddMemoryBARRejectsBadArguments(t *testing.T) {
	tests := []struct {
		name  string
		index int
		size  uint64
		is64  bool
		// taken64 declares a 64-bit BAR 0 first.
		taken64 bool
	}{
		{"negative index", -1, 0x1000, false, false},
		{"index 6", 6, 0x1000, false, false},
		{"64-bit at the last register", 5, 0x1000, true, false},
		{"size not a power of 2", 0, 0x3000, false, false},
		{"size below 16", 0, 8, false, false},
		{"32-bit BAR of 4 GiB", 0, 1 << 32, false, false},
		{"upper half of a 64-bit BAR", 1, 0x1000, false, true},
		{"same BAR twice", 0, 0x1000, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfigSpace(Header{})
			if tt.taken64 {
				if err := c.AddMemoryBAR(0, 0x1000, true); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.AddMemoryBAR(tt.index, tt.size, tt.is64); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestOutOfRangeConfigAccessesReadAllOnesAndWriteNothing(t *testing.T) {
	c := NewConfigSpace(Header{VendorID: 0x1234})
	for _, a := range [][2]int{{-1, 4}, {ConfigSize, 1}, {ConfigSize - 2, 4}, {0, 0}, {0, ConfigSize + 1}} {
		data := bytes.Repeat([]byte{0}, a[1])
		c.Read(a[0], data)
		if !bytes.Equal(data, bytes.Repeat([]byte{0xff}, a[1])) {
			t.Errorf("read %d bytes at %d = % x, want all ones", a[1], a[0], data)
		}
		c.Write(a[0], data)
	}
	var v [2]byte
	c.Read(RegVendorID, v[:])
	if binary.LittleEndian.Uint16(v[:]) != 0x1234 {
		t.Fatal("vendor id damaged")
	}
}
