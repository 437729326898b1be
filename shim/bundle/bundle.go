// Package bundle is what joey reads from, and keeps in, the OCI bundle
// directory containerd makes for each task: the spec's annotations decide
// which sandbox a container belongs to, and a small record lets
// `containerd-shim-joey-v2 delete` find that sandbox and its configuration
// after the shim that created it is gone.
package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/pkg/atomicfile"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CRI's annotations on every container of a pod.
const (
	// AnnotationContainerType is "sandbox" for a pod's first (pause)
	// container and "container" for the others.
	AnnotationContainerType = "io.kubernetes.cri.container-type"
	// AnnotationSandboxID names the pod's sandbox container.
	AnnotationSandboxID = "io.kubernetes.cri.sandbox-id"

	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"
)

// SpecFile is the OCI spec in a bundle.
const SpecFile = "config.json"

// RecordFile is joey's own file in a bundle.
const RecordFile = "joey.json"

// SandboxID returns the sandbox a container with the given id and
// annotations belongs to: the CRI sandbox id when there is one, otherwise
// the container is a sandbox of its own (ctr, nerdctl).
func SandboxID(id string, annotations map[string]string) string {
	if sb := annotations[AnnotationSandboxID]; sb != "" {
		return sb
	}
	return id
}

// JoinsSandbox reports whether a container must join a sandbox that already
// runs rather than start one: CRI marks every container of a pod but the
// first as type "container".
func JoinsSandbox(annotations map[string]string) bool {
	return annotations[AnnotationContainerType] == ContainerTypeContainer
}

// ReadSpec reads the OCI spec of the bundle in dir.
func ReadSpec(dir string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(dir, SpecFile))
	if err != nil {
		return nil, fmt.Errorf("read bundle spec: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read bundle spec %s: %w", filepath.Join(dir, SpecFile), err)
	}
	return &s, nil
}

// Record is what the shim notes in a container's bundle when it creates the
// container, for the delete command that may run after the shim died.
type Record struct {
	// SandboxID is the sandbox the container was created in.
	SandboxID string `json:"sandbox_id"`
	// ConfigPath is the joey configuration file containerd named in the
	// runtime options, "" when joey looked for it itself.
	ConfigPath string `json:"config_path,omitempty"`
	// Pid is the task pid containerd was given (the VMM's).
	Pid int `json:"pid,omitempty"`
	// ShimPid and ShimStartTime name the shim process serving the
	// sandbox (see internal/procutil). containerd runs the delete command
	// after every task delete, not only after a shim died: while that shim
	// lives, it owns the sandbox and delete must leave it alone.
	ShimPid       int    `json:"shim_pid,omitempty"`
	ShimStartTime uint64 `json:"shim_start_time,omitempty"`
}

// WriteRecord stores r in the bundle in dir, atomically.
func WriteRecord(dir string, r Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("write bundle record: %w", err)
	}
	// A crash mid-write must leave no torn record for delete to misread.
	f, err := atomicfile.New(filepath.Join(dir, RecordFile), 0o600)
	if err != nil {
		return fmt.Errorf("write bundle record: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Cancel()
		return fmt.Errorf("write bundle record: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write bundle record: %w", err)
	}
	return nil
}

// ReadRecord reads the record of the bundle in dir. A bundle without one
// (its container was never created) gives an error wrapping
// errdefs.ErrNotFound.
func ReadRecord(dir string) (Record, error) {
	var r Record
	path := filepath.Join(dir, RecordFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, fmt.Errorf("read bundle record %s: %w", path, errdefs.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read bundle record: %w", err)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("read bundle record %s: %w", path, err)
	}
	return r, nil
}
