package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/joeyrt/joey/persist/api"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := NewStore(filepath.Join(t.TempDir(), "joey"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sandbox(ns, id string) *api.SandboxState {
	exit := uint32(137)
	created := time.Date(2025, 3, 1, 12, 0, 0, 5, time.UTC)
	return &api.SandboxState{
		ID: id, Namespace: ns, Status: api.SandboxRunning, CreatedAt: created,
		Bundle:     "/run/containerd/io.containerd.runtime.v2.task/" + ns + "/" + id,
		Hypervisor: "qemu",
		VMM: api.VMM{
			Process:  api.Process{Name: "qemu-system-x86_64", Pid: 4242, StartTime: 987654},
			StateDir: "/run/joey/" + ns + "/" + id,
			Sockets:  []string{"/run/joey/" + ns + "/" + id + "/qmp.sock"},
			Helpers:  []api.Process{{Name: "virtiofsd", Pid: 4243, StartTime: 987655}},
		},
		Network: api.Network{
			NetNS: "/var/run/netns/cni-1", Model: "tcfilter",
			Endpoints: []api.Endpoint{{Interface: "eth0", Tap: "tap0_joey"}},
		},
		ShareDir: "/run/joey/" + ns + "/" + id + "/shared",
		Mounts:   []string{"/run/joey/" + ns + "/" + id + "/shared"},
		Cgroups:  []string{"/joey/" + id},
		Containers: map[string]api.ContainerState{
			id: {ID: id, Status: api.ContainerRunning, Pid: 1, CreatedAt: created,
				Rootfs: "/run/joey/" + ns + "/" + id + "/shared/" + id + "/rootfs"},
			"app": {ID: "app", Status: api.ContainerStopped, Image: "docker.io/library/busybox:latest",
				Mounts: []string{"/run/joey/x/shared/app/vol"}, Pid: 2, ExitStatus: &exit,
				ExitedAt: created.Add(time.Minute), CreatedAt: created,
				Annotations: map[string]string{"io.kubernetes.cri.container-type": "container"}},
		},
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	in := sandbox("default", "sb1")
	if err := s.Save(ctx, in); err != nil {
		t.Fatal(err)
	}
	if in.Version != 0 {
		t.Errorf("Save changed the caller's Version to %d", in.Version)
	}
	got, err := s.Load(ctx, "default", "sb1")
	if err != nil {
		t.Fatal(err)
	}
	want := *in
	want.Version = api.Version
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("round trip changed the state\ngot  %+v\nwant %+v", got, &want)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "default", "sb1", "state.json")); err != nil {
		t.Errorf("state not at <root>/<ns>/<id>/state.json: %v", err)
	}
}

func TestSaveReplacesState(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	st := sandbox("default", "sb1")
	if err := s.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	st.Status = api.SandboxStopped
	delete(st.Containers, "app")
	if err := s.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx, "default", "sb1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != api.SandboxStopped || len(got.Containers) != 1 {
		t.Errorf("second Save not kept: status %s, %d containers", got.Status, len(got.Containers))
	}
}

func TestLoadOfMissingSandboxIsNotFound(t *testing.T) {
	_, err := newStore(t).Load(context.Background(), "default", "nope")
	if !errdefs.IsNotFound(err) {
		t.Errorf("got %v, want ErrNotFound", err)
	}
}

// A crash while writing leaves a temp file beside (or instead of) the state
// file. It must never be read, and the next Save must remove it.
func TestLeftoverTempFileIsIgnoredThenRemoved(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		committed bool // a Save completed before the crash
	}{
		{"crash during a later save", true},
		{"crash during the first save", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			first := sandbox("default", "sb1")
			dir, _ := s.Dir("default", "sb1")
			if tt.committed {
				if err := s.Save(ctx, first); err != nil {
					t.Fatal(err)
				}
			} else if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			torn := filepath.Join(dir, tempPrefix+"123456")
			if err := os.WriteFile(torn, []byte(`{"version":1,"id":"sb1","namespace":"def`), 0o600); err != nil {
				t.Fatal(err)
			}

			got, err := s.Load(ctx, "default", "sb1")
			switch {
			case tt.committed && (err != nil || got.Bundle != first.Bundle):
				t.Fatalf("Load after crash: %v, %+v; want the committed state", err, got)
			case !tt.committed && !errdefs.IsNotFound(err):
				t.Fatalf("Load after crash before the first save: %v, want ErrNotFound", err)
			}
			list, err := s.List(ctx, "")
			if err != nil {
				t.Fatalf("List after crash: %v", err)
			}
			if want := map[bool]int{true: 1, false: 0}[tt.committed]; len(list) != want {
				t.Fatalf("List after crash found %d sandboxes, want %d", len(list), want)
			}

			next := sandbox("default", "sb1")
			next.Status = api.SandboxStopped
			if err := s.Save(ctx, next); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(torn); !os.IsNotExist(err) {
				t.Errorf("temp file left by the crash survived the next Save: %v", err)
			}
			got, err = s.Load(ctx, "default", "sb1")
			if err != nil || got.Status != api.SandboxStopped {
				t.Errorf("Load after the next Save: %v, status %v", err, got)
			}
		})
	}
}

func TestTraversingIDsAreRejectedEverywhere(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	s, err := NewStore(filepath.Join(base, "root", "joey"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", ".", "..", "../../escape", "a/b", "/abs", "a\x00b", strings.Repeat("x", 256)} {
		t.Run(fmt.Sprintf("%q", bad), func(t *testing.T) {
			ops := map[string]error{
				"Save id":        s.Save(ctx, sandbox("default", bad)),
				"Save namespace": s.Save(ctx, sandbox(bad, "sb")),
				"Delete id":      s.Delete(ctx, "default", bad),
				"Delete ns":      s.Delete(ctx, bad, "sb"),
			}
			_, ops["Load id"] = s.Load(ctx, "default", bad)
			_, ops["Load namespace"] = s.Load(ctx, bad, "sb")
			_, ops["Dir"] = s.Dir("default", bad)
			if bad != "" { // "" means every namespace to List
				_, ops["List"] = s.List(ctx, bad)
			}
			for op, err := range ops {
				if !errdefs.IsInvalidArgument(err) {
					t.Errorf("%s: got %v, want ErrInvalidArgument", op, err)
				}
			}
		})
	}
	st := sandbox("default", "sb")
	st.Containers["../x"] = api.ContainerState{ID: "../x"}
	if err := s.Save(ctx, st); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Save with container id ../x: got %v, want ErrInvalidArgument", err)
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("rejected calls created %v under %s", entries, base)
	}
}

func TestSaveRejectsContainerUnderWrongKey(t *testing.T) {
	s := newStore(t)
	st := sandbox("default", "sb")
	st.Containers["other"] = api.ContainerState{ID: "app"}
	if err := s.Save(context.Background(), st); !errdefs.IsInvalidArgument(err) {
		t.Errorf("got %v, want ErrInvalidArgument", err)
	}
}

func writeState(t *testing.T, s *Store, ns, id, content string) {
	t.Helper()
	dir, err := s.Dir(ns, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRejectsStateItCannotTrust(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"newer version", fmt.Sprintf(`{"version":%d,"id":"sb","namespace":"default","new_field":1}`, api.Version+1),
			fmt.Sprintf("state version %d was written by a newer joey; this one reads up to version %d", api.Version+1, api.Version)},
		{"no version", `{"id":"sb","namespace":"default"}`, "no valid version (0)"},
		{"not JSON", `{"version":1,`, "corrupt state"},
		{"another sandbox's state", `{"version":1,"id":"other","namespace":"default"}`, "holds sandbox default/other"},
		{"another namespace's state", `{"version":1,"id":"sb","namespace":"k8s.io"}`, "holds sandbox k8s.io/sb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			writeState(t, s, "default", "sb", tt.content)
			_, err := s.Load(context.Background(), "default", "sb")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func ids(list []*api.SandboxState) []string {
	var out []string
	for _, st := range list {
		out = append(out, st.Namespace+"/"+st.ID)
	}
	return out
}

func TestListAcrossNamespaces(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if list, err := s.List(ctx, ""); err != nil || len(list) != 0 {
		t.Fatalf("List before the root exists: %v, %v; want nothing", ids(list), err)
	}
	for _, st := range []*api.SandboxState{sandbox("k8s.io", "b"), sandbox("default", "z"), sandbox("k8s.io", "a")} {
		if err := s.Save(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	// Not sandboxes: a stray file in the root and in a namespace.
	for _, p := range []string{"stray", "k8s.io/stray.json"} {
		if err := os.WriteFile(filepath.Join(s.Root(), p), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		ns   string
		want []string
	}{
		{"", []string{"default/z", "k8s.io/a", "k8s.io/b"}},
		{"k8s.io", []string{"k8s.io/a", "k8s.io/b"}},
		{"default", []string{"default/z"}},
		{"moby", nil},
	}
	for _, tt := range tests {
		list, err := s.List(ctx, tt.ns)
		if err != nil {
			t.Fatalf("List(%q): %v", tt.ns, err)
		}
		if !reflect.DeepEqual(ids(list), tt.want) {
			t.Errorf("List(%q) = %v, want %v", tt.ns, ids(list), tt.want)
		}
	}
}

func TestListReportsUnreadableStateAndReturnsTheRest(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.Save(ctx, sandbox("default", "good")); err != nil {
		t.Fatal(err)
	}
	writeState(t, s, "default", "bad", `{"version":99,"id":"bad","namespace":"default"}`)
	list, err := s.List(ctx, "")
	if err == nil || !strings.Contains(err.Error(), "default/bad") {
		t.Errorf("List error %v does not name default/bad", err)
	}
	if !reflect.DeepEqual(ids(list), []string{"default/good"}) {
		t.Errorf("List = %v, want [default/good]", ids(list))
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.Save(ctx, sandbox("default", "sb")); err != nil {
		t.Fatal(err)
	}
	dir, _ := s.Dir("default", "sb")
	if err := os.WriteFile(filepath.Join(dir, "qmp.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "default", "sb"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("sandbox directory still there: %v", err)
	}
	if _, err := s.Load(ctx, "default", "sb"); !errdefs.IsNotFound(err) {
		t.Errorf("Load after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "default", "sb"); err != nil {
		t.Errorf("second Delete: %v, want nil", err)
	}
	if err := s.Delete(ctx, "never", "existed"); err != nil {
		t.Errorf("Delete of a sandbox never saved: %v, want nil", err)
	}
}

// Goroutines saving one sandbox at once, through two Stores as two
// processes would, must leave one whole file that some Save wrote.
func TestConcurrentSavesLeaveAValidFile(t *testing.T) {
	ctx := context.Background()
	s1 := newStore(t)
	s2, err := NewStore(s1.Root())
	if err != nil {
		t.Fatal(err)
	}
	const writers, saves = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*saves)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := []*Store{s1, s2}[w%2]
			for i := range saves {
				st := sandbox("default", "sb")
				st.Bundle = fmt.Sprintf("/bundle/%d/%d", w, i)
				if err := s.Save(ctx, st); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := s1.Load(ctx, "default", "sb")
	if err != nil {
		t.Fatal(err)
	}
	var w, i int
	if _, err := fmt.Sscanf(got.Bundle, "/bundle/%d/%d", &w, &i); err != nil {
		t.Errorf("bundle %q was not written by any Save", got.Bundle)
	}
	dir, _ := s1.Dir("default", "sb")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Errorf("temp file %s left after all Saves returned", e.Name())
		}
	}
}

// A Save racing a Delete must either land after it (the sandbox exists
// again, whole) or before it (nothing is left): never an error, never a
// directory without state.
func TestSaveRacingDeleteNeverFails(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for range 50 {
		var wg sync.WaitGroup
		var saveErr, delErr error
		wg.Add(2)
		go func() { defer wg.Done(); saveErr = s.Save(ctx, sandbox("default", "sb")) }()
		go func() { defer wg.Done(); delErr = s.Delete(ctx, "default", "sb") }()
		wg.Wait()
		if saveErr != nil || delErr != nil {
			t.Fatalf("Save: %v, Delete: %v", saveErr, delErr)
		}
		dir, _ := s.Dir("default", "sb")
		_, statErr := os.Stat(dir)
		_, loadErr := s.Load(ctx, "default", "sb")
		if statErr == nil && loadErr != nil {
			t.Fatalf("directory exists but Load fails: %v", loadErr)
		}
	}
}

func TestNewStoreWantsAnAbsoluteRoot(t *testing.T) {
	if _, err := NewStore("run/joey"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("got %v, want ErrInvalidArgument", err)
	}
}

func TestCancelledContextStopsEveryOperation(t *testing.T) {
	s := newStore(t)
	if err := s.Save(context.Background(), sandbox("default", "sb")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, loadErr := s.Load(ctx, "default", "sb")
	_, listErr := s.List(ctx, "")
	for op, err := range map[string]error{
		"Save": s.Save(ctx, sandbox("default", "sb")), "Delete": s.Delete(ctx, "default", "sb"),
		"Load": loadErr, "List": listErr,
	} {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: got %v, want context.Canceled", op, err)
		}
	}
}
