package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The validation engine: it applies a kind's table (payloads.go) to a
// payload and says what is wrong, naming the key.

// kind is a value's type in a table.
type kind struct {
	name   string   // as error messages say it: "an EID", "a boolean", ...
	values []string // oneOf: the allowed strings
	check  func(raw json.RawMessage) bool
}

var (
	eid     = kind{name: "an EID (a non-empty string without ':', spaces or control characters)", check: isEID}
	boolean = kind{name: "a boolean", check: func(r json.RawMessage) bool { s := string(r); return s == "true" || s == "false" }}
	integer = kind{name: "a non-negative integer", check: isCount}
	text    = kind{name: "a string", check: func(r json.RawMessage) bool { _, ok := str(r); return ok }}
)

// oneOf is a string among values.
func oneOf(values ...string) kind {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = strconv.Quote(v)
	}
	return kind{name: "one of " + strings.Join(quoted, ", "), values: values, check: func(r json.RawMessage) bool {
		s, ok := str(r)
		return ok && slices.Contains(values, s)
	}}
}

// key is one row of a table.
type key struct {
	name       string
	kind       kind
	on         []string // events it may appear on; nil: all of the channel's
	required   bool     // required wherever it is allowed
	requiredOn []string // required on these events, optional on the others it is allowed on
	with       string   // allowed only when this key is present ("parent": comments only)
	when       *is      // allowed only when another key has a value
}

// is is the condition "key has value".
type is struct{ key, value string }

// table is one channel kind's payload rules.
type table struct {
	events []string
	keys   []key
}

func events(names ...string) []string { return names }

// fieldError is a refused payload: the key at fault (a JSON path under the
// payload, "" for the payload itself) and why.
type fieldError struct {
	field  string
	reason string
}

func (e *fieldError) Error() string {
	if e.field == "" {
		return e.reason
	}
	return e.field + ": " + e.reason
}

func refuse(field, format string, args ...any) *fieldError {
	return &fieldError{field: field, reason: fmt.Sprintf(format, args...)}
}

// validate checks payload against the table of kind and returns its event.
func validate(kindName string, payload json.RawMessage) (string, *fieldError) {
	t, ok := tables[kindName]
	if !ok {
		return "", refuse("", "no payload table for channel kind %q", kindName)
	}
	obj, err := members(payload)
	if err != nil {
		return "", err
	}
	rawEvent, ok := obj["event"]
	if !ok {
		return "", refuse("event", "is required (one of %s)", strings.Join(t.events, ", "))
	}
	ev, ok := str(rawEvent)
	if !ok || !slices.Contains(t.events, ev) {
		return "", refuse("event", "must be one of %s on %s, got %s", strings.Join(t.events, ", "), kindName, clip(rawEvent))
	}
	var unknown []string
	for k := range obj {
		if k != "event" && !slices.ContainsFunc(t.keys, func(x key) bool { return x.name == k }) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		names := make([]string, len(t.keys))
		for i, k := range t.keys {
			names[i] = k.name
		}
		return "", refuse(unknown[0], "is not a key of %s payloads (keys: event, %s)", kindName, strings.Join(names, ", "))
	}
	for _, k := range t.keys {
		raw, present := obj[k.name]
		why := k.refusedBecause(obj, ev)
		switch {
		case present && why != "":
			return "", refuse(k.name, "is not allowed %s", why)
		case present && !k.kind.check(raw):
			return "", refuse(k.name, "must be %s, got %s", k.kind.name, clip(raw))
		case !present && why == "" && (k.required || slices.Contains(k.requiredOn, ev)):
			return "", refuse(k.name, "is required on %q events of %s", ev, kindName)
		}
	}
	return ev, nil
}

// refusedBecause says why k may not appear in obj with event ev ("" when it
// may).
func (k *key) refusedBecause(obj map[string]json.RawMessage, ev string) string {
	if k.on != nil && !slices.Contains(k.on, ev) {
		return fmt.Sprintf("on %q events (only on %s)", ev, strings.Join(k.on, ", "))
	}
	if k.with != "" {
		if _, ok := obj[k.with]; !ok {
			return fmt.Sprintf("without %q (it is only for comments)", k.with)
		}
	}
	if k.when != nil {
		if v, ok := str(obj[k.when.key]); !ok || v != k.when.value {
			return fmt.Sprintf("unless %s is %q", k.when.key, k.when.value)
		}
	}
	return ""
}

// members decodes a JSON object, refusing duplicate keys (which of two
// values counts would be up to each client's parser).
func members(raw json.RawMessage) (map[string]json.RawMessage, *fieldError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, refuse("", "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, refuse("", "must be a JSON object: %v", err)
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, refuse("", "must be a JSON object: %v", err)
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, refuse(k, "bad JSON value: %v", err)
		}
		if _, dup := out[k]; dup {
			return nil, refuse(k, "appears twice")
		}
		out[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, refuse("", "must be a JSON object: %v", err)
	}
	if dec.More() {
		return nil, refuse("", "must be one JSON object")
	}
	return out, nil
}

func str(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func isEID(raw json.RawMessage) bool {
	s, ok := str(raw)
	return ok && validEID(s)
}

// validEID: EIDs are non-empty strings without ':' (the channel separator),
// spaces (the subscribe list's separator) or control characters.
func validEID(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// isCount: a JSON integer, 0 or more, without fraction or exponent.
func isCount(raw json.RawMessage) bool {
	s := string(raw)
	if s == "" || s[0] == '-' {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// clip quotes a bad value in an error message, shortened.
func clip(raw json.RawMessage) string {
	const max = 40
	if len(raw) > max {
		return string(raw[:max]) + "..."
	}
	return string(raw)
}
