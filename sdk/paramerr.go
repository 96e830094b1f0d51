package sdk

import (
	"encoding/json"
	"reflect"
	"strings"
)

// ParamsError turns an error of decoding a call's params into v (with
// encoding/json) into InvalidParams naming the field by its path in the
// params ("params.where.lat"), as the caller wrote it: encoding/json names
// a field reached through an embedded struct by that struct's Go name, and
// a type by its Go name, neither of which the caller ever saw. Errors of
// other kinds keep their message. Call.Bind uses it; a plugin that decodes
// params its own way (strictly, say) can too.
func ParamsError(err error, v any) *Error {
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if !asTypeError(err, &te) {
		return InvalidParams("params: "+strings.TrimPrefix(err.Error(), "json: "), nil)
	}
	field := jsonPath(reflect.TypeOf(v), te.Field)
	if field == "" {
		return InvalidParams("params: expected "+jsonKind(te.Type)+", got "+te.Value, nil)
	}
	return InvalidParams("params."+field+": expected "+jsonKind(te.Type)+", got "+te.Value, map[string]string{"field": field})
}

// jsonPath rewrites encoding/json's dotted field path through t, dropping
// the segments that name embedded structs (their fields are the parent's
// in JSON).
func jsonPath(t reflect.Type, path string) string {
	if path == "" {
		return ""
	}
	var out []string
	for _, seg := range strings.Split(path, ".") {
		t = elem(t)
		if t != nil && t.Kind() == reflect.Struct {
			if f, ok := t.FieldByName(seg); ok && f.Anonymous && !hasJSONName(t, seg) {
				t = f.Type // an embedded struct: its fields are its parent's
				continue
			}
			t = fieldType(t, seg)
		} else {
			t = nil
		}
		out = append(out, seg)
	}
	return strings.Join(out, ".")
}

// elem unwraps pointers, slices, arrays and maps to the type of their
// elements: a path goes through them without a segment.
func elem(t reflect.Type) reflect.Type {
	for t != nil {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
			t = t.Elem()
		default:
			return t
		}
	}
	return nil
}

// hasJSONName: some field of t is called name in JSON.
func hasJSONName(t reflect.Type, name string) bool { return fieldType(t, name) != nil }

// fieldType is the type of t's field called name in JSON, promoted ones
// included, or nil.
func fieldType(t reflect.Type, name string) reflect.Type {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case tag == "-":
		case f.Anonymous && tag == "" && elem(f.Type) != nil && elem(f.Type).Kind() == reflect.Struct:
			if ft := fieldType(elem(f.Type), name); ft != nil {
				return ft
			}
		case tag == name, tag == "" && strings.EqualFold(f.Name, name):
			return f.Type
		}
	}
	return nil
}

// jsonKind names a Go type as the JSON value it decodes from.
func jsonKind(t reflect.Type) string {
	switch elemOrSelf(t).Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another value"
}

func elemOrSelf(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}
