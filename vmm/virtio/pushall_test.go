package virtio_test

import (
	"testing"

	"github.com/joeyrt/joey/vmm/virtio"
)

func TestPushAllPublishesSeveralChainsInOrderAtOnce(t *testing.T) {
	drv, q, _ := setup(t, 0)
	var used []virtio.Used
	for i := range 3 {
		drv.Add(nil, []int{8})
		c, ok, err := q.Pop()
		if !ok || err != nil {
			t.Fatal(ok, err)
		}
		used = append(used, virtio.Used{Head: c.Head, Written: uint32(i + 1)})
	}
	if q.PushAll(nil) {
		t.Fatal("PushAll of nothing asks for an interrupt")
	}
	if _, ok := drv.Next(); ok {
		t.Fatal("PushAll of nothing moved the used index")
	}
	if !q.PushAll(used) {
		t.Fatal("PushAll says no interrupt though the driver did not suppress them")
	}
	for i, want := range used {
		u, ok := drv.Next()
		if !ok || u.Head != want.Head || u.Written != want.Written {
			t.Fatalf("entry %d = %+v %v, want %+v", i, u, ok, want)
		}
	}
	if _, ok := drv.Next(); ok {
		t.Fatal("more entries than pushed")
	}
}

func TestPushAllWithEventIdxInterruptsWhenTheBatchPassesUsedEvent(t *testing.T) {
	tests := []struct {
		name      string
		usedEvent uint16
		want      bool
	}{
		{"event inside the batch", 1, true},
		{"event at the batch's last entry", 2, true},
		{"event beyond the batch", 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drv, q, _ := setup(t, virtio.FeatureEventIdx)
			drv.SetUsedEvent(tt.usedEvent)
			var used []virtio.Used
			for range 3 {
				drv.Add(nil, []int{1})
				c, _, _ := q.Pop()
				used = append(used, virtio.Used{Head: c.Head})
			}
			if got := q.PushAll(used); got != tt.want {
				t.Fatalf("notify = %v, want %v", got, tt.want)
			}
		})
	}
}
