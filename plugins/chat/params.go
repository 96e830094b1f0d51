package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	o, dup, err := members(raw)
	if err != nil {
		if path == "" {
			return nil, sdk.InvalidParams("params: "+err.Error(), nil)
		}
		return nil, fieldError(path, "%v", err)
	}
	if dup != "" {
		// Which of the two values counts would be up to each client's
		// parser: the plugin could route by one while a client reads the
		// other.
		return nil, fieldError(join(path, dup), "appears twice")
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

// members decodes a JSON object's members and names the first key that
// appears twice in it, if any.
func members(raw json.RawMessage) (object, string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{': the caller checked it
		return nil, "", err
	}
	o := object{}
	dup := ""
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, "", err
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, "", err
		}
		if _, seen := o[k]; seen && dup == "" {
			dup = k
		}
		o[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, "", err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, "", errors.New("invalid JSON: data after the object")
	}
	return o, dup, nil
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
