// Package persist keeps sandbox state on disk (DESIGN decision 11) so that
// a shim that was killed can be followed by `containerd-shim-joey-v2 delete`
// that still frees the VM, TAPs, mounts and cgroups, and so `joey ps` and
// `joey inspect` can list sandboxes without asking any shim.
//
// Layout: <root>/<namespace>/<sandbox-id>/state.json, one file per sandbox
// holding its containers too. One file means one atomic rename commits the
// whole sandbox: cleanup never sees a container record without the sandbox
// record that says where its mounts are, or the reverse, and a sandbox
// directory is never half listed. The price is rewriting a few kilobytes per
// change, which is nothing next to booting a VM.
//
// The sandbox directory is also where the runtime may keep the VMM's
// sockets and other per-sandbox files; Delete removes it all.
package persist

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/joeyrt/joey/persist/api"
)

const stateFile = "state.json"

// Store reads and writes sandbox state under one root directory
// (runtime.state_dir, /run/joey by default).
//
// Saves and Deletes of one sandbox are serialized by a lock file in its
// directory, across goroutines and processes, so the call that takes the
// lock last decides what stays, and a Save never removes the temp file of
// another. Reads take no lock: the rename makes every read see a whole file.
type Store struct {
	root string
}

// NewStore returns a Store rooted at root, an absolute path. The root is
// created by the first Save.
func NewStore(root string) (*Store, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("state store: root %q is not an absolute path: %w", root, errdefs.ErrInvalidArgument)
	}
	return &Store{root: filepath.Clean(root)}, nil
}

// Root is the directory holding every namespace.
func (s *Store) Root() string { return s.root }

// Dir is the directory of sandbox id in namespace ns. It fails for ids and
// namespaces that are not a single safe path element.
func (s *Store) Dir(ns, id string) (string, error) {
	if err := validate("namespace", ns); err != nil {
		return "", err
	}
	if err := validate("sandbox id", id); err != nil {
		return "", err
	}
	return filepath.Join(s.root, ns, id), nil
}

// Save writes the state of a sandbox, replacing what was there, with
// Version set to api.Version. A crash at any point leaves the previous state
// or the new one, never a torn file; a temp file that a crash left behind
// is removed here.
func (s *Store) Save(ctx context.Context, st *api.SandboxState) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save sandbox state: %w", err)
	}
	dir, err := s.Dir(st.Namespace, st.ID)
	if err != nil {
		return fmt.Errorf("save sandbox state: %w", err)
	}
	for key, c := range st.Containers {
		if err := validate("container id", key); err != nil {
			return fmt.Errorf("save sandbox %s/%s: %w", st.Namespace, st.ID, err)
		}
		if c.ID != key {
			return fmt.Errorf("save sandbox %s/%s: container %q is stored under key %q: %w",
				st.Namespace, st.ID, c.ID, key, errdefs.ErrInvalidArgument)
		}
	}
	out := *st
	out.Version = api.Version
	data, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return fmt.Errorf("save sandbox %s/%s: %w", st.Namespace, st.ID, err)
	}
	data = append(data, '\n')

	lock, err := lockDir(dir, true)
	if err != nil {
		return fmt.Errorf("save sandbox %s/%s: lock: %w", st.Namespace, st.ID, err)
	}
	defer lock.Close()
	if err := removeTemps(dir); err != nil {
		return fmt.Errorf("save sandbox %s/%s: remove leftover temp files: %w", st.Namespace, st.ID, err)
	}
	if err := writeAtomic(dir, stateFile, data); err != nil {
		return fmt.Errorf("save sandbox %s/%s: %w", st.Namespace, st.ID, err)
	}
	return nil
}

// Load reads the state of sandbox id in namespace ns. A sandbox without
// state gives an error wrapping errdefs.ErrNotFound; state written by a
// newer joey gives an error saying so.
func (s *Store) Load(ctx context.Context, ns, id string) (*api.SandboxState, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load sandbox state: %w", err)
	}
	dir, err := s.Dir(ns, id)
	if err != nil {
		return nil, fmt.Errorf("load sandbox state: %w", err)
	}
	path := filepath.Join(dir, stateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load sandbox %s/%s: no %s: %w", ns, id, path, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load sandbox %s/%s: %w", ns, id, err)
	}
	st, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("load sandbox %s/%s: %s: %w", ns, id, path, err)
	}
	// The directory names the sandbox; a file that disagrees was copied or
	// moved by hand, and cleaning up after it could hit another sandbox.
	if st.ID != id || st.Namespace != ns {
		return nil, fmt.Errorf("load sandbox %s/%s: %s holds sandbox %s/%s: remove or move it back",
			ns, id, path, st.Namespace, st.ID)
	}
	return st, nil
}

func decode(data []byte) (*api.SandboxState, error) {
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("corrupt state: %w", err)
	}
	switch {
	case v.Version > api.Version:
		return nil, fmt.Errorf("state version %d was written by a newer joey; this one reads up to version %d: use the newer joey's containerd-shim-joey-v2 delete or joey to manage it",
			v.Version, api.Version)
	case v.Version < 1:
		return nil, fmt.Errorf("state has no valid version (%d): not written by joey", v.Version)
	}
	var st api.SandboxState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("corrupt state: %w", err)
	}
	return &st, nil
}

// List returns the sandboxes of namespace ns, or of every namespace when ns
// is "", sorted by namespace and id. A directory without state yet (a
// sandbox being created, or a crash before its first Save) is skipped.
// Sandboxes whose state cannot be read are reported in the returned error,
// joined, while the others are still returned: `joey ps` shows what it can.
func (s *Store) List(ctx context.Context, ns string) ([]*api.SandboxState, error) {
	var namespaces []string
	if ns != "" {
		if err := validate("namespace", ns); err != nil {
			return nil, fmt.Errorf("list sandboxes: %w", err)
		}
		namespaces = []string{ns}
	} else {
		var err error
		if namespaces, err = subdirs(s.root); err != nil {
			return nil, fmt.Errorf("list sandboxes: %w", err)
		}
	}
	var out []*api.SandboxState
	var errs []error
	for _, n := range namespaces {
		ids, err := subdirs(filepath.Join(s.root, n))
		if err != nil {
			errs = append(errs, fmt.Errorf("list sandboxes in %s: %w", n, err))
			continue
		}
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				return out, fmt.Errorf("list sandboxes: %w", err)
			}
			st, err := s.Load(ctx, n, id)
			switch {
			case errors.Is(err, errdefs.ErrNotFound):
			case err != nil:
				errs = append(errs, err)
			default:
				out = append(out, st)
			}
		}
	}
	slices.SortFunc(out, func(a, b *api.SandboxState) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.ID, b.ID))
	})
	return out, errors.Join(errs...)
}

// subdirs lists the directories in dir whose names are valid ids; anything
// else (a stray file, a name joey could not have made) is not a sandbox. A
// missing dir has none.
func subdirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && ValidateID(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Delete removes the directory of sandbox id in namespace ns and all in it.
// A sandbox that is already gone is not an error. It refuses while anything
// is mounted in the directory, since removing it would delete the files of
// whatever is mounted there (a container's rootfs): unmount first.
func (s *Store) Delete(ctx context.Context, ns, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete sandbox state: %w", err)
	}
	dir, err := s.Dir(ns, id)
	if err != nil {
		return fmt.Errorf("delete sandbox state: %w", err)
	}
	lock, err := lockDir(dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete sandbox %s/%s: lock: %w", ns, id, err)
	}
	defer lock.Close()
	// mountinfo has resolved paths; the root may sit behind a symlink
	// (/var/run -> /run).
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("delete sandbox %s/%s: %w", ns, id, err)
	}
	mounts, err := mountsUnderSelf(real)
	if err != nil {
		return fmt.Errorf("delete sandbox %s/%s: read mounts: %w", ns, id, err)
	}
	if len(mounts) > 0 {
		return fmt.Errorf("delete sandbox %s/%s: %s is still mounted: unmount it first: %w",
			ns, id, strings.Join(mounts, ", "), errdefs.ErrFailedPrecondition)
	}
	// Out of the way first, in one rename: a Save racing this Delete then
	// finds no directory and makes a fresh one, instead of creating its
	// lock file in the directory RemoveAll is emptying ("directory not
	// empty"). The hidden name is not a valid sandbox id, so List skips
	// it should a crash leave it behind.
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("delete sandbox %s/%s: %w", ns, id, err)
	}
	tomb := filepath.Join(filepath.Dir(dir), ".deleted-"+id+"-"+hex.EncodeToString(rnd[:]))
	if err := os.Rename(dir, tomb); err != nil {
		return fmt.Errorf("delete sandbox %s/%s: %w", ns, id, err)
	}
	if err := os.RemoveAll(tomb); err != nil {
		return fmt.Errorf("delete sandbox %s/%s: %w", ns, id, err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("delete sandbox %s/%s: %w", ns, id, err)
	}
	return nil
}
