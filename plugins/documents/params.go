package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/heraldhq/herald/sdk"
)

// Bounds on names given by clients (they key maps and store buckets).
const (
	maxNameBytes = 256
	maxIDBytes   = 512
)

// bind decodes a call's params strictly: an unknown key is an error naming
// it, so that a misspelt option is not silently ignored.
func bind(c *sdk.Call, v any) error {
	params := c.Params
	if len(bytes.TrimSpace(params)) == 0 || string(params) == "null" {
		params = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			f = strings.Trim(f, `"`)
			return sdk.InvalidParams(fmt.Sprintf("params.%s: unknown argument", f), map[string]string{"field": f})
		}
		return sdk.ParamsError(err, v)
	}
	if _, err := dec.Token(); err != io.EOF {
		return sdk.InvalidParams("params: one JSON object expected", nil)
	}
	return nil
}

func badParam(field, format string, args ...any) error {
	return sdk.InvalidParams(fmt.Sprintf("params.%s: %s", field, fmt.Sprintf(format, args...)), map[string]string{"field": field})
}

// checkName checks an index or collection name.
func checkName(field, v string) error {
	switch {
	case v == "":
		return badParam(field, "is required: a name of 1 to %d bytes", maxNameBytes)
	case len(v) > maxNameBytes:
		return badParam(field, "is %d bytes long, at most %d are allowed", len(v), maxNameBytes)
	case strings.ContainsRune(v, 0):
		return badParam(field, "must not contain NUL")
	}
	return nil
}

func checkID(v string) error {
	switch {
	case v == "":
		return badParam("_id", "must not be empty")
	case len(v) > maxIDBytes:
		return badParam("_id", "is %d bytes long, at most %d are allowed", len(v), maxIDBytes)
	case strings.ContainsRune(v, 0):
		return badParam("_id", "must not contain NUL")
	}
	return nil
}

// where is the index and collection of a call.
type where struct {
	Index      string `json:"index"`
	Collection string `json:"collection"`
}

func (w *where) check() error {
	if err := checkName("index", w.Index); err != nil {
		return err
	}
	return checkName("collection", w.Collection)
}

// documentBody checks that raw is a JSON object fit to be a document's
// content, and returns it compacted and decoded.
func documentBody(raw json.RawMessage, required bool) (json.RawMessage, map[string]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		if required {
			return nil, nil, badParam("body", "is required: the document content, a JSON object")
		}
		return json.RawMessage("{}"), map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, nil, badParam("body", "must be a JSON object")
	}
	if _, ok := m["_id"]; ok {
		return nil, nil, badParam("body._id", "_id is the document's identifier, not content: pass it as the _id argument")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, nil, badParam("body", "must be a JSON object")
	}
	return buf.Bytes(), m, nil
}

// volatileOf checks volatile data: any JSON object (or nothing).
func volatileOf(raw json.RawMessage) (json.RawMessage, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	if t[0] != '{' {
		return nil, badParam("volatile", "must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return nil, badParam("volatile", "must be a JSON object")
	}
	return buf.Bytes(), nil
}

// withID returns the document as the filter engine sees it: its content
// with its _id, which the `ids` keyword tests.
func withID(id string, source json.RawMessage) []byte {
	idj, _ := json.Marshal(id)
	inner := bytes.TrimSpace(source)
	inner = bytes.TrimSpace(inner[1 : len(inner)-1])
	out := make([]byte, 0, len(idj)+len(inner)+10)
	out = append(out, `{"_id":`...)
	out = append(out, idj...)
	if len(inner) > 0 {
		out = append(out, ',')
		out = append(out, inner...)
	}
	return append(out, '}')
}

// merge applies a partial update: objects merge key by key, recursively;
// anything else (arrays included) is replaced.
func merge(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				dst[k] = merge(dv, sv)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// filterBody is a filter given as a call's body: absent or null is the
// empty filter (every document); anything but an object is refused, as
// Kuzzle's API refuses a body that is not an object before its filter
// engine sees it (Koncorde alone would read a number as no filter).
func filterBody(body json.RawMessage) (json.RawMessage, error) {
	t := bytes.TrimLeft(body, " \t\r\n")
	if len(t) == 0 || string(t) == "null" {
		return json.RawMessage("{}"), nil
	}
	if t[0] != '{' {
		return nil, badParam("body", "a filter must be an object (or absent, for every document)")
	}
	return body, nil
}
