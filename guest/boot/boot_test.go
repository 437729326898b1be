package boot

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseCmdlineReadsJoeyWordsAndKeepsDefaults(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    Settings
	}{
		{"console=ttyS0 quiet", Settings{Channel: "serial:agent.0", LogLevel: "info"}},
		{"joey.channel=vsock:1024 joey.log=debug", Settings{Channel: "vsock:1024", LogLevel: "debug"}},
		{"joey.debug_console=console.1 rdinit=/init", Settings{Channel: "serial:agent.0", DebugConsole: "console.1", LogLevel: "info"}},
	} {
		if got := ParseCmdline(tc.cmdline); got != tc.want {
			t.Errorf("ParseCmdline(%q) = %+v, want %+v", tc.cmdline, got, tc.want)
		}
	}
}

func TestModuleNameFoldsDashesAndExtensions(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/fs/9p/9p.ko": "9p",
		"kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko": "vmw_vsock_virtio_transport",
		"kernel/crypto/crc32c-generic.ko.xz":                 "crc32c_generic",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadModulesStopsAtTheFirstMissingModule(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "modules")
	os.WriteFile(list, []byte("# comment\n\nkernel/missing.ko\nkernel/other.ko\n"), 0o644)
	loaded, err := LoadModules(list, dir)
	if err == nil {
		t.Fatal("LoadModules succeeded with a missing module file")
	}
	if len(loaded) != 0 {
		t.Fatalf("loaded = %v, want none", loaded)
	}
}

func TestLoadModulesWithoutAListLoadsNothing(t *testing.T) {
	loaded, err := LoadModules(filepath.Join(t.TempDir(), "absent"), "/")
	if err != nil || !reflect.DeepEqual(loaded, []string(nil)) {
		t.Fatalf("LoadModules = %v, %v; want nothing, nil", loaded, err)
	}
}
