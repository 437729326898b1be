package bundle

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestSandboxIDGroupsCRIContainersByTheirSandbox(t *testing.T) {
	for _, c := range []struct {
		name        string
		annotations map[string]string
		want        string
		joins       bool
	}{
		{"ctr container is its own sandbox", nil, "c1", false},
		{"CRI sandbox", map[string]string{AnnotationContainerType: ContainerTypeSandbox, AnnotationSandboxID: "c1"}, "c1", false},
		{"CRI container joins its pod", map[string]string{AnnotationContainerType: ContainerTypeContainer, AnnotationSandboxID: "pod"}, "pod", true},
		{"empty sandbox id is ignored", map[string]string{AnnotationSandboxID: ""}, "c1", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := SandboxID("c1", c.annotations); got != c.want {
				t.Errorf("SandboxID = %q, want %q", got, c.want)
			}
			if got := JoinsSandbox(c.annotations); got != c.joins {
				t.Errorf("JoinsSandbox = %v, want %v", got, c.joins)
			}
		})
	}
}

func TestRecordRoundTripsAndIsMissingUntilWritten(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadRecord(dir); !errdefs.IsNotFound(err) {
		t.Fatalf("ReadRecord of a fresh bundle = %v, want NotFound", err)
	}
	want := Record{SandboxID: "pod", ConfigPath: "/etc/joey/x.toml", Pid: 12, ShimPid: 34, ShimStartTime: 56}
	if err := WriteRecord(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRecord(dir)
	if err != nil || got != want {
		t.Fatalf("ReadRecord = %+v, %v; want %+v", got, err, want)
	}
	if info, err := os.Stat(filepath.Join(dir, RecordFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("record file: %v, %v", info, err)
	}
}

func TestReadSpecNamesTheBrokenFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SpecFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSpec(dir); err == nil {
		t.Fatal("ReadSpec of a broken config.json succeeded")
	}
	if err := os.WriteFile(filepath.Join(dir, SpecFile), []byte(`{"annotations":{"a":"b"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := ReadSpec(dir)
	if err != nil || s.Annotations["a"] != "b" {
		t.Fatalf("ReadSpec = %+v, %v", s, err)
	}
}
