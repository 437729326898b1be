package container

import (
	"fmt"
	"path/filepath"
	"regexp"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// validID is what libcontainer accepts as a container ID; checking it here
// gives the caller an error that says what to change. It excludes "/", so
// an ID cannot leave the state directory.
var validID = regexp.MustCompile(`^[\w+.-]+$`)

func validateID(field, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalid, field)
	case len(id) > 1024:
		return fmt.Errorf("%w: %s is %d bytes long; at most 1024 are allowed", ErrInvalid, field, len(id))
	case id == "." || id == ".." || !validID.MatchString(id):
		return fmt.Errorf("%w: %s %q: use only letters, digits and \"_+.-\", and not \".\" or \"..\" alone (it names a directory)", ErrInvalid, field, id)
	}
	return nil
}

func validateSpec(spec *specs.Spec) error {
	switch {
	case spec == nil:
		return fmt.Errorf("%w: spec is nil", ErrInvalid)
	case spec.Root == nil:
		return fmt.Errorf("%w: spec.root is missing: set it to the container's rootfs", ErrInvalid)
	case spec.Root.Path == "":
		return fmt.Errorf("%w: spec.root.path is empty: set it to the container's rootfs", ErrInvalid)
	case !filepath.IsAbs(spec.Root.Path):
		return fmt.Errorf("%w: spec.root.path %q is relative: the agent has no bundle directory, give the absolute guest path", ErrInvalid, spec.Root.Path)
	case spec.Process == nil:
		return fmt.Errorf("%w: spec.process is missing: the container needs a process to run", ErrInvalid)
	}
	return validateProcess("spec.process", spec.Process)
}

func validateProcess(field string, p *specs.Process) error {
	switch {
	case p == nil:
		return fmt.Errorf("%w: %s is missing", ErrInvalid, field)
	case len(p.Args) == 0:
		return fmt.Errorf("%w: %s.args is empty: give the command to run", ErrInvalid, field)
	case p.Cwd != "" && !filepath.IsAbs(p.Cwd):
		return fmt.Errorf("%w: %s.cwd %q must be an absolute path", ErrInvalid, field, p.Cwd)
	}
	return nil
}
