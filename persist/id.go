package persist

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// maxIDLen is the longest file name Linux allows.
const maxIDLen = 255

// ValidateID checks that a sandbox id, container id or namespace can be used
// as one path element under the state root and nothing more: no "/" to
// climb into another directory, no "." or ".." to climb out, no NUL to cut
// the path short. The error wraps errdefs.ErrInvalidArgument.
func ValidateID(id string) error {
	return validate("id", id)
}

func validate(what, id string) error {
	reason := ""
	switch {
	case id == "":
		reason = "is empty"
	case id == "." || id == "..":
		reason = "is a relative path element"
	case len(id) > maxIDLen:
		reason = fmt.Sprintf("is %d bytes long, more than %d", len(id), maxIDLen)
	case strings.ContainsRune(id, '/'):
		reason = `contains "/"`
	case strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		reason = "contains a control character"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s %q %s; use letters, digits, '.', '_' and '-' as containerd does",
		errdefs.ErrInvalidArgument, what, id, reason)
}
