package config

import (
	"fmt"
	"time"
)

// Duration is a time.Duration written in TOML as a Go duration string
// ("60s", "1m30s"). Text that does not parse is kept instead of failing the
// decode, because the decoder would report it without its key; Validate
// reports it with the key, together with every other problem.
type Duration struct {
	time.Duration

	// invalid is set when the text did not parse; text is what was written.
	invalid bool
	text    string
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		*d = Duration{invalid: true, text: string(text)}
		return nil
	}
	*d = Duration{Duration: v}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) {
	if d.invalid {
		return nil, fmt.Errorf("duration %q does not parse", d.text)
	}
	return []byte(d.String()), nil
}
