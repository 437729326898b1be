package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/resource/internal/mounttest"
)

type recorder []string

func (r *recorder) record(_ context.Context, target string) error {
	*r = append(*r, target)
	return nil
}

func TestShareBindsVolumesAndRewritesTheirSources(t *testing.T) {
	testutil.RequireRoot(t)
	dir := mounttest.Dir(t)
	bundle := filepath.Join(dir, "bundle")
	data := filepath.Join(dir, "data")
	mounttest.Tmpfs(t, data)
	mounttest.Tmpfs(t, bundle)
	mounttest.WriteFile(t, filepath.Join(bundle, "hosts"), "127.0.0.1 localhost\n")
	mounttest.WriteFile(t, filepath.Join(data, "in"), "volume data")
	opts := Options{
		Bundle:   bundle,
		HostDir:  filepath.Join(dir, "share", "c1", "mounts"),
		GuestDir: "/run/joey/shared/c1/mounts",
		GuestShm: "/run/joey/sandbox/shm",
	}
	proc := specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"}
	tmp := specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid"}}
	in := []specs.Mount{
		proc,
		{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind", "rw"}},
		{Destination: "/etc/hosts", Type: "bind", Source: "hosts", Options: []string{"bind", "ro"}},
		tmp,
		{Destination: "/dev/shm", Type: "bind", Source: "/run/cri/shm", Options: []string{"rbind"}},
		{Destination: "/ro", Type: "none", Source: data, Options: []string{"rbind", "ro"}},
	}
	var rec recorder
	got, err := Share(context.Background(), in, opts, rec.record)
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.Mount{
		proc,
		{Destination: "/data", Type: "bind", Source: "/run/joey/shared/c1/mounts/1", Options: []string{"rbind", "rw"}},
		{Destination: "/etc/hosts", Type: "bind", Source: "/run/joey/shared/c1/mounts/2", Options: []string{"bind", "ro"}},
		tmp,
		{Destination: "/dev/shm", Type: "bind", Source: "/run/joey/sandbox/shm", Options: []string{"rbind"}},
		{Destination: "/ro", Type: "none", Source: "/run/joey/shared/c1/mounts/5", Options: []string{"rbind", "ro"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("guest mounts\n got %+v\nwant %+v", got, want)
	}
	host := func(n string) string { return filepath.Join(opts.HostDir, n) }
	if wantRec := []string{host("1"), host("2"), host("5")}; !slices.Equal(rec, wantRec) {
		t.Fatalf("recorded %q, want %q", rec, wantRec)
	}
	if in[1].Source != data {
		t.Fatal("Share changed the caller's mounts")
	}

	// rw dir: a write shows on the host.
	mounttest.WriteFile(t, filepath.Join(host("1"), "out"), "from the container")
	if got := mounttest.ReadFile(t, filepath.Join(data, "out")); got != "from the container" {
		t.Fatalf("rw volume write shows %q on the host", got)
	}
	// ro file and ro dir refuse writes.
	if got := mounttest.ReadFile(t, host("2")); got != "127.0.0.1 localhost\n" {
		t.Fatalf("hosts file shows %q", got)
	}
	if err := os.WriteFile(host("2"), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to a ro file volume: %v, want EROFS", err)
	}
	if err := os.WriteFile(filepath.Join(host("5"), "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to a ro dir volume: %v, want EROFS", err)
	}
}

func TestShareIsAllOrNothing(t *testing.T) {
	testutil.RequireRoot(t)
	dir := mounttest.Dir(t)
	good := filepath.Join(dir, "good")
	if err := os.Mkdir(good, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		bad     specs.Mount
		wantErr error
	}{
		{"device node", specs.Mount{Destination: "/dev/x", Type: "bind", Source: "/dev/null"}, errdefs.ErrNotImplemented},
		{"missing source", specs.Mount{Destination: "/x", Type: "bind", Source: filepath.Join(dir, "missing")}, os.ErrNotExist},
		{"no source", specs.Mount{Destination: "/x", Type: "bind"}, nil},
		{"relative source without bundle", specs.Mount{Destination: "/x", Options: []string{"bind"}, Source: "rel"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{HostDir: filepath.Join(dir, tt.name), GuestDir: "/g"}
			mounts := []specs.Mount{{Destination: "/good", Type: "bind", Source: good}, tt.bad}
			var rec recorder
			_, err := Share(context.Background(), mounts, opts, rec.record)
			if err == nil {
				t.Fatal("Share succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want one wrapping %v", err, tt.wantErr)
			}
			if left := mounttest.Under(t, dir); len(left) != 0 {
				t.Fatalf("left mounted: %q", left)
			}
		})
	}
}

func TestShmBindWithoutASharedDirBecomesATmpfs(t *testing.T) {
	in := []specs.Mount{{Destination: "/dev/shm/", Type: "bind", Source: "/run/cri/shm", Options: []string{"rbind"}}}
	got, err := Share(context.Background(), in, Options{HostDir: "/unused", GuestDir: "/g"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Type != "tmpfs" || got[0].Destination != "/dev/shm/" {
		t.Fatalf("got %+v, want a tmpfs at /dev/shm", got)
	}
}

func TestMountOptionReading(t *testing.T) {
	tests := []struct {
		m                   specs.Mount
		bind, recursive, ro bool
	}{
		{m: specs.Mount{Type: "bind"}, bind: true},
		{m: specs.Mount{Type: "rbind"}, bind: true, recursive: true},
		{m: specs.Mount{Type: "none", Options: []string{"rbind", "ro"}}, bind: true, recursive: true, ro: true},
		{m: specs.Mount{Options: []string{"bind", "ro", "rw"}}, bind: true},
		{m: specs.Mount{Type: "tmpfs", Options: []string{"ro"}}, ro: true},
		{m: specs.Mount{Type: "proc"}},
	}
	for _, tt := range tests {
		if IsBind(tt.m) != tt.bind || IsRecursive(tt.m) != tt.recursive || IsReadOnly(tt.m) != tt.ro {
			t.Errorf("%+v: bind %v recursive %v ro %v, want %v %v %v", tt.m,
				IsBind(tt.m), IsRecursive(tt.m), IsReadOnly(tt.m), tt.bind, tt.recursive, tt.ro)
		}
	}
}
