package netconf_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/joeyrt/joey/guest/netconf"
)

func TestRescanPCI(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares dir and returns the path to pass.
		setup      func(t *testing.T, dir string) string
		wantErr    []string // nil: no error
		wantFile   string   // content of the path afterwards
		wantAbsent bool     // the path must still not exist
	}{
		{
			name: "writes 1 to the rescan file",
			setup: func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "rescan")
				if err := os.WriteFile(p, nil, 0o200); err != nil {
					t.Fatal(err)
				}
				return p
			},
			wantFile: "1",
		},
		{
			name:       "missing file of a VM without PCI is no error and is not created",
			setup:      func(t *testing.T, dir string) string { return filepath.Join(dir, "bus", "pci", "rescan") },
			wantAbsent: true,
		},
		{
			name:       "missing file in an existing directory is not created either",
			setup:      func(t *testing.T, dir string) string { return filepath.Join(dir, "rescan") },
			wantAbsent: true,
		},
		{
			name: "unwritable path is an error naming the operation and the path",
			setup: func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "rescan")
				if err := os.Mkdir(p, 0o755); err != nil {
					t.Fatal(err)
				}
				return p
			},
			wantErr: []string{"rescan PCI: ", "rescan: is a directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.setup(t, t.TempDir())
			err := netconf.RescanPCI(p)
			if tt.wantErr != nil {
				wantErr(t, err, append(tt.wantErr, p)...)
				return
			}
			if err != nil {
				t.Fatalf("RescanPCI: %v", err)
			}
			b, err := os.ReadFile(p)
			if tt.wantAbsent {
				if !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s exists after RescanPCI (read: %v)", p, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(b)); got != tt.wantFile {
				t.Errorf("%s holds %q, want %q", p, got, tt.wantFile)
			}
		})
	}
}
