package config

import (
	"bufio"
	"bytes"
	"errors"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// problemsIn flattens the joined errors Load and Validate return.
func problemsIn(t *testing.T, err error) []*Error {
	t.Helper()
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error %q (%T) is not a *config.Error", err, err)
		}
		out = append(out, e)
	}
	if err != nil {
		walk(err)
	}
	return out
}

func TestCommittedFileLoadsToDefault(t *testing.T) {
	c, err := load("joey.toml", "", DefaultPath)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != "joey.toml" {
		t.Errorf("Path = %q, want joey.toml", c.Path)
	}
	c.Path = ""
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("joey.toml loads to\n%+v\nbut Default() is\n%+v", c, Default())
	}
}

func TestDefaultTOMLIsTheCommittedFile(t *testing.T) {
	onDisk, err := os.ReadFile("joey.toml")
	if err != nil {
		t.Fatal(err)
	}
	got := DefaultTOML()
	if !bytes.Equal(got, onDisk) {
		t.Fatal("DefaultTOML() differs from joey.toml")
	}
	got[0] ^= 0xff
	if !bytes.Equal(DefaultTOML(), onDisk) {
		t.Fatal("changing the returned slice changed the embedded file")
	}
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

// Load == Default() would still hold if the file left a key out, so check
// that the file spells out every key the Config has, and nothing else.
func TestCommittedFileSetsEveryKey(t *testing.T) {
	var doc map[string]any
	if err := toml.Unmarshal(DefaultTOML(), &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	var flatten func(prefix string, m map[string]any)
	flatten = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				flatten(prefix+k+".", sub)
				continue
			}
			got[prefix+k] = true
		}
	}
	flatten("", doc)
	want := leafKeys(reflect.TypeFor[Config](), "")
	for _, k := range want {
		if !got[k] {
			t.Errorf("joey.toml does not set %s", k)
		}
		delete(got, k)
	}
	if len(got) > 0 {
		t.Errorf("joey.toml sets keys the Config lacks: %v", slices.Sorted(maps.Keys(got)))
	}
	if len(want) < 20 {
		t.Errorf("only %d keys found in Config; the tag walk is broken", len(want))
	}
}

func TestCommittedFileCommentsEveryKey(t *testing.T) {
	sc := bufio.NewScanner(bytes.NewReader(DefaultTOML()))
	prev, n := "", 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "[") &&
			!strings.HasPrefix(prev, "#") {
			t.Errorf("joey.toml:%d: %q has no comment above it", n, line)
		}
		prev = line
	}
}

func TestHelpersApplyDefaults(t *testing.T) {
	c := Default()
	if got := c.Image.KernelPath(); got != "/var/lib/joey/image/vmlinux" {
		t.Errorf("KernelPath() = %q", got)
	}
	if got := c.Image.InitrdPath(); got != "/var/lib/joey/image/initrd.img" {
		t.Errorf("InitrdPath() = %q", got)
	}
	c.Image.Kernel, c.Image.Initrd = "/k", "/i"
	if c.Image.KernelPath() != "/k" || c.Image.InitrdPath() != "/i" {
		t.Errorf("overrides ignored: %q %q", c.Image.KernelPath(), c.Image.InitrdPath())
	}
	if got := c.Hypervisor.QEMU.EffectiveMaxVCPUs(); got != 1 {
		t.Errorf("EffectiveMaxVCPUs() with max_vcpus = 0: %d, want vcpus (1)", got)
	}
	c.Hypervisor.QEMU.MaxVCPUs = 4
	if got := c.Hypervisor.QEMU.EffectiveMaxVCPUs(); got != 4 {
		t.Errorf("EffectiveMaxVCPUs() = %d, want 4", got)
	}
	if !c.AnnotationAllowed(AnnotationVCPUs) || c.AnnotationAllowed("io.joey.config.kernel") {
		t.Error("AnnotationAllowed does not follow runtime.default_annotations_allowed")
	}
}
