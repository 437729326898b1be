package container

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestRemoveLeavesNoStateAndNoCgroup(t *testing.T) {
	requireContainers(t)
	for _, tc := range []struct {
		name  string
		start bool
		pause bool
	}{
		{"running", true, false},
		{"created, never started", false, false},
		{"paused", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestManager(t, Options{})
			ctx := context.Background()
			id := uniqueID(t)
			if err := m.Create(ctx, id, testSpec(t, "sleep", "1000"), false); err != nil {
				t.Fatal(err)
			}
			if tc.start {
				if err := m.Start(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.Exec(ctx, id, "e", execProcess("sleep", "1000"), false); err != nil {
				t.Fatal(err)
			}
			if tc.pause {
				if err := m.Pause(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			stateDir := filepath.Join(m.root, id)
			cgroup := testCgroupParent + "/" + id
			if _, err := os.Stat(stateDir); err != nil {
				t.Fatalf("state dir while the container exists: %v", err)
			}
			if len(cgroupDirs(cgroup)) == 0 {
				t.Fatalf("no cgroup dir for %s while the container exists", cgroup)
			}
			pio, _ := m.Stdio(id, "")

			if err := m.Remove(ctx, id); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
				t.Errorf("state dir after Remove: %v, want it gone", err)
			}
			if d := cgroupDirs(cgroup); len(d) > 0 {
				t.Errorf("cgroup dirs after Remove: %v", d)
			}
			if _, err := pio.Stdin.Write([]byte("x")); err == nil {
				t.Error("stdin still writable after Remove: the agent's pipe end was not closed")
			}
			mustErr(t, m.Remove(ctx, id), ErrNotFound, id)
			_, err := m.Wait(ctx, id, "")
			mustErr(t, err, ErrNotFound)
			// The ID can be used again.
			if err := m.Create(ctx, id, testSpec(t, "true"), false); err != nil {
				t.Fatalf("Create after Remove: %v", err)
			}
		})
	}
}

func TestCloseRemovesEveryContainerAndRefusesNewOnes(t *testing.T) {
	requireContainers(t)
	m, err := NewManager(filepath.Join(t.TempDir(), "state"), testReaper, Options{CgroupParent: testCgroupParent})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ids := []string{uniqueID(t), uniqueID(t)}
	for _, id := range ids {
		if err := m.Create(ctx, id, testSpec(t, "sleep", "1000"), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if d := cgroupDirs(testCgroupParent + "/" + id); len(d) > 0 {
			t.Errorf("cgroup dirs after Close: %v", d)
		}
	}
	if entries, err := os.ReadDir(m.root); err != nil || len(entries) != 0 {
		t.Errorf("state root after Close: %v, %v; want empty", entries, err)
	}
	mustErr(t, m.Create(ctx, uniqueID(t), testSpec(t, "true"), false), ErrInvalidState, "closed")
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestLifecyclesDoNotAccumulateDescriptors(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	lifecycle := func(terminal bool) {
		t.Helper()
		id := uniqueID(t)
		if err := m.Create(ctx, id, testSpec(t, "sleep", "1000"), terminal); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := m.Exec(ctx, id, "e", execProcess("true"), terminal); err != nil {
			t.Fatal(err)
		}
		waitExit(t, m, id, "e")
		if err := m.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// The first round opens what the process keeps for good (the poller,
	// cgroup files libcontainer caches).
	lifecycle(false)
	lifecycle(true)
	before := settledFDs(-1)
	for i := range 6 {
		lifecycle(i%2 == 0)
	}
	if after := settledFDs(before); after > before {
		t.Fatalf("%d descriptors open after 6 container lifecycles, %d before", after, before)
	}
}

// settledFDs counts this process's open descriptors. libcontainer keeps a
// pidfd in each os.Process it makes, closed when the garbage collector
// frees it, so collect and retry for a while until the count is at most
// want (any count if want < 0).
func settledFDs(want int) int {
	deadline := time.Now().Add(3 * time.Second)
	for {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
		entries, _ := os.ReadDir("/proc/self/fd")
		if n := len(entries); want < 0 || n <= want || time.Now().After(deadline) {
			return n
		}
	}
}
