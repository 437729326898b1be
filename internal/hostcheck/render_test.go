package hostcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// TestJSONShapeIsStable pins the keys and check order documented on Report:
// scripts read them, so a change here is a change of SchemaVersion.
func TestJSONShapeIsStable(t *testing.T) {
	r, err := Probe(context.Background(), usableHost(t).host())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, buf.String())
	}
	if got, want := keys(doc), []string{"accelerator", "checks", "ok", "schema"}; !reflect.DeepEqual(got, want) {
		t.Errorf("top-level keys %v, want %v", got, want)
	}
	if string(doc["schema"]) != "1" || string(doc["ok"]) != "true" || string(doc["accelerator"]) != `"tcg"` {
		t.Errorf("schema %s ok %s accelerator %s, want 1 true \"tcg\"", doc["schema"], doc["ok"], doc["accelerator"])
	}
	var checks []map[string]json.RawMessage
	if err := json.Unmarshal(doc["checks"], &checks); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range checks {
		if got, want := keys(c), []string{"detail", "fix", "name", "required", "status", "value"}; !reflect.DeepEqual(got, want) {
			t.Errorf("check keys %v, want %v", got, want)
		}
		var name string
		json.Unmarshal(c["name"], &name)
		names = append(names, name)
	}
	want := []string{"kvm", "qemu", "tcg", "accelerator", "builtin-vmm", "tun", "vhost-net", "vhost-vsock", "virtiofsd", "cgroup-v2", "containerd", "image"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("checks %v, want %v", names, want)
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

func TestTableShowsRowsFixesAndVerdict(t *testing.T) {
	tests := []struct {
		name    string
		host    func(t *testing.T) *fakeHost
		verdict string
	}{
		{"usable host", usableHost, "joey can run containers on this host (QEMU with TCG)."},
		{"host without QEMU or image", func(t *testing.T) *fakeHost {
			f := usableHost(t)
			os.Remove(filepath.Join(f.bin, qemuBinary))
			os.RemoveAll(f.image)
			return f
		}, "joey cannot run containers on this host: missing qemu, accelerator, image (see the fixes above)."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Probe(context.Background(), tt.host(t).host())
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteTable(&buf, r); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			lines := strings.Split(out, "\n")
			if !strings.HasPrefix(lines[0], "CHECK") || !strings.Contains(lines[0], "STATUS") || !strings.Contains(lines[0], "DETAIL") {
				t.Errorf("header %q", lines[0])
			}
			for _, c := range r.Checks {
				if !strings.Contains(out, c.Name) || !strings.Contains(out, c.Detail) {
					t.Errorf("row %s missing from\n%s", c.Name, out)
				}
				if c.Fix != "" && !strings.Contains(out, "fix: "+c.Fix) {
					t.Errorf("fix of %s missing from\n%s", c.Name, out)
				}
			}
			if !strings.HasSuffix(out, "\n"+tt.verdict+"\n") {
				t.Errorf("output does not end with %q:\n%s", tt.verdict, out)
			}
		})
	}
}
