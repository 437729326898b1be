package virtio_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/virtiotest"
)

func TestPopRangesGivesGuestAddressesUncheckedAgainstRAM(t *testing.T) {
	tests := []struct {
		name     string
		features uint64
		descs    []virtiotest.Desc
		indirect bool
		readable []virtio.Range
		writable []virtio.Range
	}{
		{
			name:     "readable then writable, in chain order",
			descs:    []virtiotest.Desc{{Addr: 0x2000, Len: 16}, {Addr: 0x8000, Len: 0x1000, Flags: virtiotest.FlagWrite}, {Addr: 0x4000, Len: 8, Flags: virtiotest.FlagWrite}},
			readable: []virtio.Range{{Addr: 0x2000, Len: 16}},
			writable: []virtio.Range{{Addr: 0x8000, Len: 0x1000}, {Addr: 0x4000, Len: 8}},
		},
		{
			name:     "buffers beyond RAM or wrapping are returned as given",
			descs:    []virtiotest.Desc{{Addr: ramSize, Len: 0x1000, Flags: virtiotest.FlagWrite}, {Addr: ^uint64(0) - 4, Len: 16, Flags: virtiotest.FlagWrite}},
			writable: []virtio.Range{{Addr: ramSize, Len: 0x1000}, {Addr: ^uint64(0) - 4, Len: 16}},
		},
		{
			name:     "indirect table",
			features: virtio.FeatureIndirectDesc,
			indirect: true,
			descs:    []virtiotest.Desc{{Addr: 0x10000, Len: 0x200000, Flags: virtiotest.FlagWrite}, {Addr: 1 << 40, Len: 0x1000, Flags: virtiotest.FlagWrite}},
			writable: []virtio.Range{{Addr: 0x10000, Len: 0x200000}, {Addr: 1 << 40, Len: 0x1000}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drv, q, alloc := setup(t, tt.features)
			var head uint16
			if tt.indirect {
				table := alloc.Get(16 * uint64(len(tt.descs)))
				for i, d := range tt.descs {
					if i < len(tt.descs)-1 {
						d.Flags |= virtiotest.FlagNext
						d.Next = uint16(i + 1)
					}
					drv.WriteDescAt(table+16*uint64(i), d)
				}
				head = drv.AddChain([]virtiotest.Desc{{Addr: table, Len: uint32(16 * len(tt.descs)), Flags: virtiotest.FlagIndirect}})
			} else {
				head = drv.AddChain(tt.descs)
			}
			c, ok, err := q.PopRanges()
			if err != nil || !ok {
				t.Fatalf("PopRanges = %v, %v", ok, err)
			}
			if c.Head != head || !slices.Equal(c.Readable, tt.readable) || !slices.Equal(c.Writable, tt.writable) {
				t.Fatalf("chain = %+v, want head %d readable %v writable %v", c, head, tt.readable, tt.writable)
			}
			if q.Push(c.Head, 0); q.Pending() {
				t.Fatal("ring still pending after the only chain")
			}
		})
	}
}

func TestPopRangesRefusesChainsPopRefuses(t *testing.T) {
	tests := []struct {
		name  string
		build func(drv *virtiotest.Queue, alloc *virtiotest.Alloc)
	}{
		{"loop", func(drv *virtiotest.Queue, _ *virtiotest.Alloc) {
			drv.PutDesc(0, virtiotest.Desc{Addr: 0x2000, Len: 16, Flags: virtiotest.FlagNext | virtiotest.FlagWrite, Next: 1})
			drv.PutDesc(1, virtiotest.Desc{Addr: 0x2000, Len: 16, Flags: virtiotest.FlagNext | virtiotest.FlagWrite, Next: 0})
			drv.Publish(0)
		}},
		{"readable after writable", func(drv *virtiotest.Queue, _ *virtiotest.Alloc) {
			drv.AddChain([]virtiotest.Desc{{Addr: 0x2000, Len: 8, Flags: virtiotest.FlagWrite}, {Addr: 0x3000, Len: 8}})
		}},
		{"indirect table beyond RAM", func(drv *virtiotest.Queue, _ *virtiotest.Alloc) {
			drv.AddChain([]virtiotest.Desc{{Addr: ramSize, Len: 32, Flags: virtiotest.FlagIndirect}})
		}},
		{"avail index too far ahead", func(drv *virtiotest.Queue, _ *virtiotest.Alloc) {
			drv.SetAvailIdx(100)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drv, q, alloc := setup(t, virtio.FeatureIndirectDesc)
			tt.build(drv, alloc)
			if _, ok, err := q.PopRanges(); ok || !errors.Is(err, virtio.ErrBadChain) {
				t.Fatalf("PopRanges = %v, %v; want ErrBadChain", ok, err)
			}
		})
	}
}
