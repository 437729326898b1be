package api

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// The JSON names are the on-disk format: renaming or dropping one must come
// with a Version bump. This test fails on any such change, as a reminder.
func TestVersion1FormatIsStable(t *testing.T) {
	golden, err := os.ReadFile("testdata/v1.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(golden))
	dec.DisallowUnknownFields()
	var st SandboxState
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("the version 1 format no longer decodes: %v", err)
	}
	if st.Version != Version {
		t.Fatalf("golden file is version %d, Version is %d: add testdata/v%d.json for the new format", st.Version, Version, Version)
	}
	out, err := json.MarshalIndent(&st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(out, '\n'), golden) {
		t.Errorf("encoding changed; the version 1 format is\n%s\nnow\n%s", golden, out)
	}
}

func TestOptionalFieldsAreLeftOut(t *testing.T) {
	out, err := json.Marshal(ContainerState{ID: "c", Status: ContainerCreated})
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"exit_status", "exited_at", "pid", "annotations"} {
		if bytes.Contains(out, []byte(absent)) {
			t.Errorf("%s written for a container that has none: %s", absent, out)
		}
	}
}

func TestTapsListsEveryEndpointsDevice(t *testing.T) {
	n := Network{Endpoints: []Endpoint{{Interface: "eth0", Tap: "tap0"}, {Interface: "eth1", Tap: "tap1"}}}
	got := n.Taps()
	if len(got) != 2 || got[0] != "tap0" || got[1] != "tap1" {
		t.Errorf("Taps() = %q", got)
	}
}
