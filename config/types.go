package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// checkTypes compares a decoded TOML tree with the Config type t and returns
// one *Error per value of the wrong type, naming its full dotted key. Keys
// the Config lacks are left to the strict decoder, which knows positions.
func checkTypes(file string, tree map[string]any, t reflect.Type, prefix string) []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(tree)) {
		f, ok := fieldByTag(t, name)
		if !ok {
			continue
		}
		key, v := prefix+name, tree[name]
		if sub, ok := v.(map[string]any); ok && isTable(f.Type) {
			errs = append(errs, checkTypes(file, sub, f.Type, key+".")...)
			continue
		}
		if !fits(v, f.Type) {
			errs = append(errs, &Error{File: file, Key: key,
				Msg: fmt.Sprintf("%s = %s: want %s", key, render(v), kind(f.Type))})
		}
	}
	return errs
}

// fits reports whether a value from the generic decode can go into a field
// of type t.
func fits(v any, t reflect.Type) bool {
	switch {
	case t == reflect.TypeFor[Duration]():
		_, ok := v.(string)
		return ok
	case isTable(t):
		_, ok := v.(map[string]any)
		return ok
	}
	switch t.Kind() {
	case reflect.String:
		_, ok := v.(string)
		return ok
	case reflect.Bool:
		_, ok := v.(bool)
		return ok
	case reflect.Int:
		_, ok := v.(int64)
		return ok
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			return false
		}
		for _, item := range list {
			if !fits(item, t.Elem()) {
				return false
			}
		}
		return true
	}
	return false
}

// render writes a decoded value back roughly as TOML, for messages.
func render(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case []any:
		items := make([]string, len(v))
		for i, item := range v {
			items[i] = render(item)
		}
		return "[" + strings.Join(items, ", ") + "]"
	case map[string]any:
		return "{…}"
	}
	return fmt.Sprint(v)
}
