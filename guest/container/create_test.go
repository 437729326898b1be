package container

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCreateStartRunsWithPipesAndReportsExitCode(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := uniqueID(t)
	spec := testSpec(t, "sh", "-c", "echo out; echo err >&2; read x; echo got $x; exit 3")
	if err := m.Create(ctx, id, spec, false); err != nil {
		t.Fatal(err)
	}
	if st, err := m.Status(id); err != nil || st != Created {
		t.Fatalf("status after Create = %q, %v; want %q", st, err, Created)
	}
	pio, err := m.Stdio(id, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := pio.Stdin.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, pio.Stdout); got != "out\ngot hi\n" {
		t.Errorf("stdout = %q, want %q", got, "out\ngot hi\n")
	}
	if got := readAll(t, pio.Stderr); got != "err\n" {
		t.Errorf("stderr = %q, want %q", got, "err\n")
	}
	st := waitExit(t, m, id, "")
	if st.Code != 3 || st.ExitedAt.IsZero() {
		t.Fatalf("exit = %+v, want code 3 and a time", st)
	}
	// A second waiter after the exit gets the same answer at once.
	if again := waitExit(t, m, id, ""); again != st {
		t.Fatalf("second wait = %+v, want %+v", again, st)
	}
	if s, err := m.Status(id); err != nil || s != Stopped {
		t.Fatalf("status after exit = %q, %v; want %q", s, err, Stopped)
	}
	mustErr(t, m.Start(ctx, id), ErrInvalidState, "started already")
}

func TestStdinCloseGivesEOF(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := uniqueID(t)
	if err := m.Create(ctx, id, testSpec(t, "sh", "-c", "cat; echo eof"), false); err != nil {
		t.Fatal(err)
	}
	pio, err := m.Stdio(id, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := pio.Stdin.Write([]byte("a line\n")); err != nil {
		t.Fatal(err)
	}
	if err := pio.Stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, pio.Stdout); got != "a line\neof\n" {
		t.Fatalf("stdout = %q", got)
	}
	if st := waitExit(t, m, id, ""); st.Code != 0 {
		t.Fatalf("exit code = %d", st.Code)
	}
}

func TestProcessSettingsComeFromTheSpec(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := uniqueID(t)
	spec := testSpec(t, "sh", "-c", `echo $FOO; pwd; id -u; id -G; ulimit -n; hostname; grep CapBnd /proc/self/status`)
	spec.Process.Env = append(spec.Process.Env, "FOO=bar")
	spec.Process.Cwd = "/tmp"
	spec.Process.User.UID = 1000
	spec.Process.User.GID = 1000
	spec.Process.User.AdditionalGids = []uint32{2000}
	spec.Process.Rlimits[0].Soft, spec.Process.Rlimits[0].Hard = 512, 512
	if err := m.Create(ctx, id, spec, false); err != nil {
		t.Fatal(err)
	}
	pio, _ := m.Stdio(id, "")
	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	// The example spec's bounding set: CAP_KILL (5), CAP_NET_BIND_SERVICE
	// (10), CAP_AUDIT_WRITE (29).
	want := "bar\n/tmp\n1000\n1000 2000\n512\njoeytest\nCapBnd:\t0000000020000420\n"
	if got := readAll(t, pio.Stdout); got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if errOut := readAll(t, pio.Stderr); errOut != "" {
		t.Errorf("stderr = %q", errOut)
	}
	if st := waitExit(t, m, id, ""); st.Code != 0 {
		t.Fatalf("exit code = %d", st.Code)
	}
}

func TestTwoContainersRunAtOnce(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	ids := []string{uniqueID(t), uniqueID(t)}
	errs := make(chan error, len(ids))
	for i, id := range ids {
		go func() {
			errs <- m.Create(ctx, id, testSpec(t, "sh", "-c", "read x; echo $x; exit "+string(rune('1'+i))), false)
		}()
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		if err := m.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// Both run: each waits for its own input.
	for _, id := range ids {
		pio, _ := m.Stdio(id, "")
		pio.Stdin.Write([]byte(id + "\n"))
	}
	for i, id := range ids {
		pio, _ := m.Stdio(id, "")
		if got := readAll(t, pio.Stdout); got != id+"\n" {
			t.Errorf("container %d stdout = %q", i, got)
		}
		if st := waitExit(t, m, id, ""); st.Code != i+1 {
			t.Errorf("container %d exit code = %d, want %d", i, st.Code, i+1)
		}
	}
}

func TestNoPivotRootRunsTheContainer(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{NoPivotRoot: true})
	ctx := context.Background()
	id := uniqueID(t)
	if err := m.Create(ctx, id, testSpec(t, "sh", "-c", "ls /bin/busybox"), false); err != nil {
		t.Fatal(err)
	}
	pio, _ := m.Stdio(id, "")
	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, pio.Stdout); got != "/bin/busybox\n" {
		t.Fatalf("stdout = %q", got)
	}
	if st := waitExit(t, m, id, ""); st.Code != 0 {
		t.Fatalf("exit code = %d", st.Code)
	}
}

func TestFailedCreateLeavesNothing(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := uniqueID(t)
	spec := testSpec(t, "true")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/mnt", Type: "nosuchfs", Source: "none"})
	err := m.Create(ctx, id, spec, false)
	if err == nil {
		t.Fatal("Create with an unknown filesystem type succeeded")
	}
	t.Logf("Create failed as it should: %v", err)
	if _, err := os.Stat(filepath.Join(m.root, id)); !os.IsNotExist(err) {
		t.Errorf("state dir of the failed container: %v, want it gone", err)
	}
	if d := cgroupDirs(testCgroupParent + "/" + id); len(d) > 0 {
		t.Errorf("cgroup dirs left behind: %v", d)
	}
	mustErr(t, m.Start(ctx, id), ErrNotFound)
	// The ID is free again.
	if err := m.Create(ctx, id, testSpec(t, "true"), false); err != nil {
		t.Fatalf("Create after a failed Create: %v", err)
	}
}
