package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/heraldhq/herald/sdk"
)

// Backend bodies are checked strictly: an unknown key, a missing key or a
// value of the wrong kind is an InvalidParams error whose message and
// data.field name the field (the host answers it with HTTP 400), and
// nothing of the request is applied.

// fieldError is the InvalidParams error for one field.
func fieldError(field, format string, args ...any) error {
	return sdk.InvalidParams("params."+field+": "+fmt.Sprintf(format, args...), map[string]string{"field": field})
}

// object is a JSON object's members by key.
type object map[string]json.RawMessage

// decodeObject decodes raw, which must be a JSON object whose keys are all
// in allowed; path names raw in errors ("" for the params themselves).
func decodeObject(raw json.RawMessage, path string, allowed ...string) (object, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		if path == "" {
			return nil, sdk.InvalidParams("params: must be a JSON object", nil)
		}
		return nil, fieldError(path, "must be a JSON object")
	}
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		if path == "" {
			return nil, sdk.InvalidParams("params: "+err.Error(), nil)
		}
		return nil, fieldError(path, "%v", err)
	}
	if allowed != nil {
		var unknown []string
		for k := range o {
			if !contains(allowed, k) {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return nil, fieldError(join(path, unknown[0]), "unknown field (allowed: %s)", strings.Join(allowed, ", "))
		}
	}
	return o, nil
}

// id reads a required id field.
func (o object) id(path, key string) (string, error) {
	raw, ok := o[key]
	if !ok || string(raw) == "null" {
		return "", fieldError(join(path, key), "is required")
	}
	id, ok := parseID(raw)
	if !ok {
		return "", fieldError(join(path, key), "%s, got %s", idRule, clip(raw))
	}
	return id, nil
}

// str reads a required string field.
func (o object) str(path, key string) (string, error) {
	raw, ok := o[key]
	if !ok || string(raw) == "null" {
		return "", fieldError(join(path, key), "is required")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fieldError(join(path, key), "must be a string, got %s", clip(raw))
	}
	return s, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// clip shortens a bad value quoted in an error message.
func clip(raw json.RawMessage) string {
	const max = 40
	if len(raw) > max {
		return string(raw[:max]) + "..."
	}
	return string(raw)
}
