package memory

import (
	"errors"
	"math"
	"testing"
)

func TestAccessorsRefuseRangesOutsideRAM(t *testing.T) {
	m, err := New(2 * 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tests := []struct {
		name    string
		addr, n uint64
		ok      bool
	}{
		{"whole", 0, 8192, true},
		{"last byte", 8191, 1, true},
		{"empty at end", 8192, 0, true},
		{"one past end", 8192, 1, false},
		{"straddles end", 8190, 4, false},
		{"beyond", 1 << 40, 1, false},
		{"length wraps", 16, math.MaxUint64 - 8, false},
		{"address wraps", math.MaxUint64, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Slice(tc.addr, tc.n)
			if tc.ok != (err == nil) {
				t.Fatalf("Slice(%#x, %#x) err = %v, want ok=%v", tc.addr, tc.n, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("error %v does not wrap ErrOutOfRange", err)
			}
		})
	}
}

func TestWriteThatDoesNotFitWritesNothing(t *testing.T) {
	m, err := New(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.WriteAt([]byte{1, 2, 3, 4}, 4094); err == nil {
		t.Fatal("write across the end of RAM succeeded")
	}
	b := make([]byte, 2)
	if err := m.ReadAt(b, 4094); err != nil {
		t.Fatal(err)
	}
	if b[0] != 0 || b[1] != 0 {
		t.Fatalf("partial write happened: %v", b)
	}
	if err := m.PutUint64(4088, 0x1122334455667788); err != nil {
		t.Fatal(err)
	}
	if v, err := m.Uint32(4092); err != nil || v != 0x11223344 {
		t.Fatalf("Uint32 = %#x, %v", v, err)
	}
}

func TestNewRefusesBadSizes(t *testing.T) {
	for _, size := range []uint64{0, 4095, Limit + 4096} {
		if m, err := New(size); err == nil {
			m.Close()
			t.Errorf("New(%#x) succeeded", size)
		}
	}
}
