package persist

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidateIDRejectsWhatCouldLeaveItsDirectory(t *testing.T) {
	bad := map[string]string{
		"empty":                "",
		"dot":                  ".",
		"dot dot":              "..",
		"climbs out":           "../x",
		"absolute":             "/etc",
		"nested":               "a/b",
		"trailing slash":       "a/",
		"NUL":                  "a\x00b",
		"newline":              "a\nb",
		"DEL":                  "a\x7f",
		"longer than NAME_MAX": strings.Repeat("a", 256),
	}
	for name, id := range bad {
		t.Run(name, func(t *testing.T) {
			err := ValidateID(id)
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("ValidateID(%q) = %v, want ErrInvalidArgument", id, err)
			}
		})
	}
}

func TestValidateIDAcceptsContainerdIDs(t *testing.T) {
	for _, id := range []string{
		"default", "k8s.io", "moby", "a", "a_b-c.d", "..a", "a..",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		strings.Repeat("a", 255),
	} {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
}
