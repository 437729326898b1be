package container

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestStatsProcessesPauseResumeUpdate(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := startSleeper(t, m)
	pid, err := m.Pid(id, "")
	if err != nil {
		t.Fatal(err)
	}

	pids, err := m.Processes(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pids, pid) {
		t.Fatalf("processes = %v, want the init's pid %d among them", pids, pid)
	}

	st, err := m.Stats(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryStats.Usage.Usage == 0 || st.PidsStats.Current == 0 {
		t.Fatalf("stats: memory usage %d, pids %d; want both non-zero", st.MemoryStats.Usage.Usage, st.PidsStats.Current)
	}

	if err := m.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	if s, _ := m.Status(id); s != Paused {
		t.Fatalf("status after Pause = %q", s)
	}
	mustErr(t, m.Exec(ctx, id, "e", execProcess("true"), false), ErrInvalidState, "paused")
	mustErr(t, m.Pause(ctx, id), ErrInvalidState)
	if err := m.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	if s, _ := m.Status(id); s != Running {
		t.Fatalf("status after Resume = %q", s)
	}
	mustErr(t, m.Resume(ctx, id), ErrInvalidState)

	limit, pidsMax := int64(64<<20), int64(50)
	if err := m.Update(ctx, id, &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit},
		Pids:   &specs.LinuxPids{Limit: &pidsMax},
	}); err != nil {
		t.Fatal(err)
	}
	st, err = m.Stats(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryStats.Usage.Limit != uint64(limit) || st.PidsStats.Limit != uint64(pidsMax) {
		t.Fatalf("limits after Update: memory %d, pids %d; want %d, %d", st.MemoryStats.Usage.Limit, st.PidsStats.Limit, limit, pidsMax)
	}
	// The update left the devices alone: an exec still gets /dev/null.
	if err := m.Exec(ctx, id, "null", execProcess("sh", "-c", "echo x > /dev/null"), false); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, m, id, "null"); st.Code != 0 {
		t.Fatalf("writing /dev/null after Update: exit code %d", st.Code)
	}
	mustErr(t, m.Update(ctx, id, nil), ErrInvalid)
}

func TestOOMKillIsReported(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := uniqueID(t)
	// The limit must leave room for the container's init (this test binary,
	// larger under -race) until it runs the user's command; then an Update
	// tightens it to a little above what is charged by then.
	spec := testSpec(t, "sh", "-c", "read x; exec tail /dev/zero")
	roomy := int64(256 << 20)
	spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &roomy}
	if err := m.Create(ctx, id, spec, false); err != nil {
		t.Fatal(err)
	}
	pio, _ := m.Stdio(id, "")
	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	st, err := m.Stats(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	tight := int64(st.MemoryStats.Usage.Usage) + 16<<20
	if err := m.Update(ctx, id, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &tight}}); err != nil {
		t.Fatal(err)
	}
	// busybox tail keeps the last "line" of /dev/zero, which never ends.
	if _, err := pio.Stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-m.OOMEvents():
		if got != id {
			t.Fatalf("OOM event for %q, want %q", got, id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no OOM event within 20s")
	}
	if exit := waitExit(t, m, id, ""); exit.Code != 137 {
		t.Fatalf("exit code = %d, want 137 (OOM kill)", exit.Code)
	}
}

func TestMergeResourcesKeepsWhatTheUpdateLeavesOut(t *testing.T) {
	shares := uint64(512)
	old := &cgroups.Resources{Memory: 100, CpuShares: shares, Devices: nil}
	pids := int64(7)
	upd := &cgroups.Resources{Memory: 200, PidsLimit: &pids}
	got := mergeResources(old, upd)
	if got.Memory != 200 || got.CpuShares != 512 || got.PidsLimit == nil || *got.PidsLimit != 7 {
		t.Fatalf("merged = memory %d, shares %d, pids %v; want 200, 512, 7", got.Memory, got.CpuShares, got.PidsLimit)
	}
	if old.Memory != 100 {
		t.Fatal("the merge changed the old resources")
	}
}
