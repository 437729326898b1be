package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadChoosesTheFile(t *testing.T) {
	dir := t.TempDir()
	arg := writeFile(t, dir, "arg.toml", "[runtime]\nlog_level = \"debug\"\n")
	env := writeFile(t, dir, "env.toml", "[runtime]\nlog_level = \"warn\"\n")
	etc := writeFile(t, dir, "etc.toml", "[runtime]\nlog_level = \"error\"\n")
	missing := filepath.Join(dir, "missing.toml")

	tests := []struct {
		name, path, env, fallback string
		wantPath, wantLevel       string
	}{
		{"argument wins over env", arg, env, etc, arg, "debug"},
		{"env wins over the default path", "", env, etc, env, "warn"},
		{"default path when nothing is named", "", "", etc, etc, "error"},
		{"defaults when the default path is missing", "", "", missing, "", "info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(tt.path, tt.env, tt.fallback)
			if err != nil {
				t.Fatal(err)
			}
			if c.Path != tt.wantPath || c.Runtime.LogLevel != tt.wantLevel {
				t.Errorf("got Path %q log_level %q, want %q %q", c.Path, c.Runtime.LogLevel, tt.wantPath, tt.wantLevel)
			}
		})
	}
}

func TestLoadMissingNamedFileIsAnError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.toml")
	tests := []struct {
		name, path, env, wantHint string
	}{
		{"named by the caller", missing, "", "create it or name another file"},
		{"named by JOEY_CONFIG", "", missing, "unset JOEY_CONFIG"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(tt.path, tt.env, DefaultPath)
			if err == nil {
				t.Fatal("no error for a missing file that was named")
			}
			if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) ||
				!strings.Contains(err.Error(), tt.wantHint) {
				t.Errorf("error %q should wrap ErrNotExist, name %s and say %q", err, missing, tt.wantHint)
			}
		})
	}
}

func TestLoadReadsJOEY_CONFIG(t *testing.T) {
	p := writeFile(t, t.TempDir(), "c.toml", "[hypervisor.qemu]\nvcpus = 3\n")
	t.Setenv(EnvPath, p)
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != p || c.Hypervisor.QEMU.VCPUs != 3 {
		t.Errorf("Load(\"\") with JOEY_CONFIG=%s: Path %q vcpus %d", p, c.Path, c.Hypervisor.QEMU.VCPUs)
	}
}

func TestKeysLeftOutKeepDefaults(t *testing.T) {
	c, err := Parse([]byte("[hypervisor.qemu]\nmemory_mib = 1024\n"), "f.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Path = "f.toml"
	want.Hypervisor.QEMU.MemoryMiB = 1024
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
}

func TestListsReplaceDefaults(t *testing.T) {
	tests := []struct {
		doc  string
		want []string
	}{
		{"[runtime]\ndefault_annotations_allowed = [\"io.joey.config.memory_mib\"]\n", []string{AnnotationMemoryMiB}},
		{"[runtime]\ndefault_annotations_allowed = []\n", []string{}},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(tt.doc), "f.toml")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c.Runtime.DefaultAnnotationsAllowed, tt.want) {
			t.Errorf("%q: got %q, want %q", tt.doc, c.Runtime.DefaultAnnotationsAllowed, tt.want)
		}
	}
}

func TestUnknownKeysNameKeyFileAndPosition(t *testing.T) {
	tests := []struct {
		name, doc, key, wantMsg string
	}{
		{"misspelt key", "[hypervisor.qemu]\nvcpus = 2\nmachin = \"q35\"\n", "hypervisor.qemu.machin",
			"config /etc/joey/config.toml:3:1: unknown key hypervisor.qemu.machin: want one of path, machine, accel, vcpus, max_vcpus, memory_mib, shared_fs, agent_channel, debug_console, extra_args"},
		{"unknown hypervisor table", "[hypervisor.firecracker]\npath = \"fc\"\n", "hypervisor.firecracker",
			"config /etc/joey/config.toml:1:2: unknown key hypervisor.firecracker: want one of qemu, builtin"},
		{"unknown top-level key", "debug = true\n", "debug",
			"config /etc/joey/config.toml:1:1: unknown key debug: want one of runtime, image, hypervisor, agent"},
		{"dotted key", "runtime.statedir = \"/x\"\n", "runtime.statedir",
			"unknown key runtime.statedir: want one of hypervisor, state_dir, log_level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "/etc/joey/config.toml")
			ps := problemsIn(t, err)
			if len(ps) != 1 {
				t.Fatalf("want 1 problem, got %d: %v", len(ps), err)
			}
			if ps[0].Key != tt.key || !strings.Contains(ps[0].Error(), tt.wantMsg) {
				t.Errorf("got key %q, message\n%s\nwant key %q, message containing\n%s", ps[0].Key, ps[0], tt.key, tt.wantMsg)
			}
		})
	}
}

func TestWrongTypesNameKeyAndValue(t *testing.T) {
	tests := []struct {
		name, doc, key, wantMsg string
	}{
		{"string for integer", "[hypervisor.qemu]\nvcpus = \"two\"\n", "hypervisor.qemu.vcpus",
			`config f.toml: hypervisor.qemu.vcpus = "two": want an integer`},
		{"integer for bool", "[runtime]\nsandbox_cgroup_only = 1\n", "runtime.sandbox_cgroup_only",
			`config f.toml: runtime.sandbox_cgroup_only = 1: want true or false`},
		{"string for list", "[image]\nkernel_params = \"quiet\"\n", "image.kernel_params",
			`image.kernel_params = "quiet": want a list of strings`},
		{"value for table", "agent = 5\n", "agent", "agent = 5: want a table"},
		{"table for value", "[agent.dial_timeout]\nseconds = 5\n", "agent.dial_timeout",
			`agent.dial_timeout = {…}: want a duration string such as "60s"`},
		{"mixed list", "[hypervisor.qemu]\nextra_args = [\"-d\", 3]\n", "hypervisor.qemu.extra_args",
			`hypervisor.qemu.extra_args = ["-d", 3]: want a list of strings`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "f.toml")
			ps := problemsIn(t, err)
			if len(ps) != 1 || ps[0].Key != tt.key || !strings.Contains(ps[0].Error(), tt.wantMsg) {
				t.Errorf("got %v (%d problems), want key %q and message containing\n%s", err, len(ps), tt.key, tt.wantMsg)
			}
		})
	}
}

func TestSyntaxErrorsGivePosition(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"unterminated string", "[runtime]\nlog_level = \"info\n", "config f.toml:2:"},
		{"duplicate key", "[runtime]\nhypervisor = \"qemu\"\nhypervisor = \"qemu\"\n", "config f.toml:3:"},
		{"unclosed table", "[agent\n", "config f.toml:1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "f.toml")
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("got %v, want an error starting %q", err, tt.want)
			}
		})
	}
}

func TestEveryWrongTypeReportedAtOnce(t *testing.T) {
	doc := "[hypervisor.qemu]\nvcpus = \"2\"\nmemory_mib = \"1G\"\n[agent]\nlog_level = 3\n"
	_, err := Parse([]byte(doc), "f.toml")
	var keys []string
	for _, p := range problemsIn(t, err) {
		keys = append(keys, p.Key)
	}
	want := []string{"agent.log_level", "hypervisor.qemu.memory_mib", "hypervisor.qemu.vcpus"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("problems for keys %q, want %q\n%v", keys, want, err)
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		value   string
		want    time.Duration
		wantErr string
	}{
		{`"90s"`, 90 * time.Second, ""},
		{`"1m30s"`, 90 * time.Second, ""},
		{`"2m"`, 2 * time.Minute, ""},
		{`"500ms"`, 500 * time.Millisecond, ""},
		{`"60"`, 0, `agent.dial_timeout = "60": want a duration with a unit`},
		{`60`, 0, `agent.dial_timeout = 60: want a duration string such as "60s"`},
		{`"soon"`, 0, `agent.dial_timeout = "soon": want a duration with a unit`},
		{`""`, 0, `agent.dial_timeout = "": want a duration with a unit`},
		{`"0s"`, 0, `agent.dial_timeout = "0s": want a positive duration`},
		{`"-5s"`, 0, `agent.dial_timeout = "-5s": want a positive duration`},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			c, err := Parse([]byte("[agent]\ndial_timeout = "+tt.value+"\n"), "f.toml")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Agent.DialTimeout.Duration != tt.want {
					t.Errorf("got %v, want %v", c.Agent.DialTimeout.Duration, tt.want)
				}
				return
			}
			ps := problemsIn(t, err)
			if len(ps) != 1 || ps[0].Key != "agent.dial_timeout" || !strings.Contains(ps[0].Error(), tt.wantErr) {
				t.Errorf("got %v, want one problem containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestEveryProblemReportedAtOnce(t *testing.T) {
	doc := `
[runtime]
hypervisor = "firecracker"
networkmodel = "bridge"

[hypervisor.qemu]
machine = "virt"
accel = "hvf"

[agent]
dial_timeout = "forever"
`
	_, err := Parse([]byte(doc), "f.toml")
	var keys []string
	for _, p := range problemsIn(t, err) {
		keys = append(keys, p.Key)
	}
	want := []string{"runtime.networkmodel", "runtime.hypervisor", "hypervisor.qemu.machine",
		"hypervisor.qemu.accel", "agent.dial_timeout"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("problems for keys %q, want %q\n%v", keys, want, err)
	}
}
