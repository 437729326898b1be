package persist

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// tempPrefix starts the name of a state file being written. Such a file is
// never read: it is either renamed over stateFile or left by a crash, and
// then removed by the next Save.
const tempPrefix = ".state.json.tmp-"

// writeAtomic replaces dir/name with data so that a crash at any point
// leaves either the old file or the new one, never a mix: write a temp file
// in the same directory, fsync it, rename it over the target, fsync the
// directory so the rename itself survives.
func writeAtomic(dir, name string, data []byte) (retErr error) {
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// removeTemps removes temp files that a crashed writer left in dir.
//
// Preconditions: the caller holds the sandbox's lock (lockDir), so no
// temp file in dir is being written.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// mkdirDurable creates dir and any missing parents, fsyncing the parent of
// each directory it creates so the new entries survive a crash too.
func mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirDurable(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if os.IsExist(err) {
			return nil
		}
		return err
	}
	return syncDir(parent)
}
