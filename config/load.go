package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Load reads the configuration. The file is path if not empty (containerd's
// ConfigPath runtime option, a command-line flag), else $JOEY_CONFIG, else
// /etc/joey/config.toml. Keys the file leaves out keep their defaults. Only
// the last may be missing, giving Default(): a file someone named must exist.
// The result is validated; errors are *Error values joined, one per problem.
func Load(path string) (*Config, error) {
	return load(path, os.Getenv(EnvPath), DefaultPath)
}

func load(path, env, fallback string) (*Config, error) {
	hint := "create it or name another file"
	switch {
	case path != "":
	case env != "":
		path = env
		hint = "create it or unset " + EnvPath + " to use " + fallback
	default:
		c, err := loadFile(fallback)
		if errors.Is(err, fs.ErrNotExist) {
			return Default(), nil
		}
		return c, err
	}
	c, err := loadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", err, hint)
	}
	return c, err
}

func loadFile(path string) (*Config, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return Parse(doc, path)
}

// Parse decodes a TOML document over the defaults and validates the result.
// file names the document in errors and becomes Config.Path.
func Parse(doc []byte, file string) (*Config, error) {
	// A first pass into a generic map finds syntax errors and values of the
	// wrong type with their full key; the struct decoder would stop at the
	// first and name only part of the key.
	var tree map[string]any
	var decode *toml.DecodeError
	if err := toml.Unmarshal(doc, &tree); errors.As(err, &decode) {
		line, col := decode.Position()
		return nil, &Error{File: file, Line: line, Column: col, Msg: decode.Error()}
	} else if err != nil {
		return nil, fmt.Errorf("config %s: %w", file, err)
	}
	if errs := checkTypes(file, tree, reflect.TypeFor[Config](), ""); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	c := Default()
	c.Path = file
	err := toml.NewDecoder(bytes.NewReader(doc)).DisallowUnknownFields().Decode(c)
	var strict *toml.StrictMissingError
	switch {
	case err == nil:
	case errors.As(err, &strict):
		// Unknown keys leave the known ones decoded, so report bad values
		// too and let the operator fix everything in one pass.
		errs := make([]error, 0, len(strict.Errors)+1)
		for i := range strict.Errors {
			errs = append(errs, unknownKey(file, &strict.Errors[i]))
		}
		return nil, errors.Join(append(errs, c.Validate())...)
	default:
		return nil, fmt.Errorf("config %s: %w", file, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func unknownKey(file string, de *toml.DecodeError) *Error {
	line, col := de.Position()
	key := de.Key()
	dotted := strings.Join(key, ".")
	msg := "unknown key " + dotted + ": remove it"
	if len(key) == 0 {
		return &Error{File: file, Line: line, Column: col, Msg: de.Error()}
	}
	if parent, ok := field(key[:len(key)-1]); ok && isTable(parent) {
		msg = "unknown key " + dotted + ": want one of " + strings.Join(tableKeys(parent), ", ")
	}
	return &Error{File: file, Line: line, Column: col, Key: dotted, Msg: msg}
}
