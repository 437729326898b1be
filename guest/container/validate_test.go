package container

import (
	"context"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCreateRejectsBadInputNamingTheField(t *testing.T) {
	good := func() *specs.Spec {
		return &specs.Spec{
			Root:    &specs.Root{Path: "/rootfs"},
			Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"},
		}
	}
	for _, tc := range []struct {
		name  string
		id    string
		spec  func() *specs.Spec
		field string
	}{
		{"empty id", "", good, "container id is empty"},
		{"id with a slash", "a/b", good, `container id "a/b"`},
		{"id dot-dot", "..", good, `container id ".."`},
		{"id with a space", "a b", good, `container id "a b"`},
		{"id too long", strings.Repeat("a", 1025), good, "container id is 1025 bytes"},
		{"nil spec", "c", func() *specs.Spec { return nil }, "spec is nil"},
		{"no process", "c", func() *specs.Spec { s := good(); s.Process = nil; return s }, "spec.process is missing"},
		{"no root", "c", func() *specs.Spec { s := good(); s.Root = nil; return s }, "spec.root is missing"},
		{"empty root path", "c", func() *specs.Spec { s := good(); s.Root.Path = ""; return s }, "spec.root.path is empty"},
		{"relative root path", "c", func() *specs.Spec { s := good(); s.Root.Path = "rootfs"; return s }, `spec.root.path "rootfs" is relative`},
		{"no args", "c", func() *specs.Spec { s := good(); s.Process.Args = nil; return s }, "spec.process.args is empty"},
		{"relative cwd", "c", func() *specs.Spec { s := good(); s.Process.Cwd = "tmp"; return s }, `spec.process.cwd "tmp"`},
		{"unknown rlimit", "c", func() *specs.Spec {
			s := good()
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE"}, {Type: "RLIMIT_BOGUS"}}
			return s
		}, `spec.process.rlimits[1].type "RLIMIT_BOGUS"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewManager(t.TempDir(), testReaper, Options{})
			if err != nil {
				t.Fatal(err)
			}
			mustErr(t, m.Create(context.Background(), tc.id, tc.spec(), false), ErrInvalid, tc.field)
		})
	}
}

func TestExecRejectsBadInput(t *testing.T) {
	m, err := NewManager(t.TempDir(), testReaper, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustErr(t, m.Exec(ctx, "c", "", execProcess("true"), false), ErrInvalid, "exec id is empty")
	mustErr(t, m.Exec(ctx, "c", "e", nil, false), ErrInvalid, "process is missing")
	mustErr(t, m.Exec(ctx, "c", "e", &specs.Process{}, false), ErrInvalid, "process.args is empty")
	mustErr(t, m.Exec(ctx, "c", "e", execProcess("true"), false), ErrNotFound, `"c"`)
}

func TestUnknownContainerIsNotFound(t *testing.T) {
	m, err := NewManager(t.TempDir(), testReaper, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"Start":      func() error { return m.Start(ctx, "x") },
		"Remove":     func() error { return m.Remove(ctx, "x") },
		"Pause":      func() error { return m.Pause(ctx, "x") },
		"Resume":     func() error { return m.Resume(ctx, "x") },
		"Resize":     func() error { return m.Resize(ctx, "x", "", 1, 1) },
		"Update":     func() error { return m.Update(ctx, "x", &specs.LinuxResources{}) },
		"DeleteExec": func() error { return m.DeleteExec(ctx, "x", "e") },
		"Wait":       func() error { _, err := m.Wait(ctx, "x", ""); return err },
		"Stdio":      func() error { _, err := m.Stdio("x", ""); return err },
		"Processes":  func() error { _, err := m.Processes(ctx, "x"); return err },
		"Stats":      func() error { _, err := m.Stats(ctx, "x"); return err },
		"Status":     func() error { _, err := m.Status("x"); return err },
		"Pid":        func() error { _, err := m.Pid("x", ""); return err },
	} {
		t.Run(name, func(t *testing.T) { mustErr(t, call(), ErrNotFound, `"x"`) })
	}
}

func TestNewManagerRejectsBadInput(t *testing.T) {
	if _, err := NewManager("", testReaper, Options{}); err == nil || !strings.Contains(err.Error(), "stateRoot") {
		t.Fatalf("empty state root: err = %v", err)
	}
	if _, err := NewManager(t.TempDir(), nil, Options{}); err == nil || !strings.Contains(err.Error(), "reaper") {
		t.Fatalf("nil reaper: err = %v", err)
	}
}

func TestCreateRefusesATakenID(t *testing.T) {
	requireContainers(t)
	m := newTestManager(t, Options{})
	ctx := context.Background()
	id := uniqueID(t)
	if err := m.Create(ctx, id, testSpec(t, "true"), false); err != nil {
		t.Fatal(err)
	}
	mustErr(t, m.Create(ctx, id, testSpec(t, "true"), false), ErrAlreadyExists, id)
}
