package config

import (
	"encoding"
	"reflect"
	"strings"
)

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// field finds the Config field that the dotted TOML key names, by the
// struct tags, so messages can say which keys and types are expected
// without a second list that could drift from the struct.
func field(key []string) (reflect.Type, bool) {
	t := reflect.TypeFor[Config]()
	for _, name := range key {
		if !isTable(t) {
			return nil, false
		}
		f, ok := fieldByTag(t, name)
		if !ok {
			return nil, false
		}
		t = f.Type
	}
	return t, true
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tag(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// isTable tells a TOML table from a value: structs are tables unless they
// decode from text, as Duration does.
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(textUnmarshaler)
}

// tableKeys lists the keys a table accepts, in declaration order.
func tableKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if name := tag(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

// leafKeys lists every value's full dotted key under t.
func leafKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := tag(f)
		if name == "" {
			continue
		}
		if isTable(f.Type) {
			keys = append(keys, leafKeys(f.Type, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// kind describes in words what a value of type t looks like in TOML.
func kind(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return `a duration string such as "60s"`
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int:
		return "an integer"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "a list of strings"
	case isTable(t):
		return "a table"
	}
	return t.String()
}
