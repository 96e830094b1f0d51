package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/sdk"
)

// Bodies are checked strictly: an unknown key, a missing key or a value of
// the wrong kind is an InvalidParams error whose message and data.field
// name the field (the host answers a backend with HTTP 400), and nothing
// of the request is applied.

const (
	maxKBIDLen = 128
	maxUUIDLen = 256
	// maxSeqID keeps seqids exact in JavaScript clients (2^53 - 1).
	maxSeqID = 1<<53 - 1
)

// Operations of resource_written, as NucliaDB's ResourceOperationType.
var operations = []string{"created", "modified", "deleted"}

// Stages of kb.waitFor.
const (
	untilWritten   = "written"
	untilProcessed = "processed"
	untilIndexed   = "indexed"
)

var stages = []string{untilWritten, untilProcessed, untilIndexed}

func fieldError(field, format string, args ...any) error {
	return sdk.InvalidParams("params."+field+": "+fmt.Sprintf(format, args...), map[string]string{"field": field})
}

// fields is a JSON object's members by key.
type fields map[string]json.RawMessage

// decodeFields decodes params, which must be a JSON object whose keys are
// all in allowed.
func decodeFields(params json.RawMessage, allowed ...string) (fields, error) {
	raw := bytes.TrimSpace(params)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, sdk.InvalidParams("params: must be a JSON object", nil)
	}
	var f fields
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, sdk.InvalidParams("params: "+err.Error(), nil)
	}
	var unknown []string
	for k := range f {
		if !contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fieldError(unknown[0], "unknown field (allowed: %s)", strings.Join(allowed, ", "))
	}
	return f, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func isNull(raw json.RawMessage) bool { return raw == nil || string(raw) == "null" }

// str reads a required string.
func (f fields) str(key string) (string, error) {
	raw, ok := f[key]
	if !ok || isNull(raw) {
		return "", fieldError(key, "is required")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fieldError(key, "must be a string, got %s", clip(raw))
	}
	return s, nil
}

// optStr reads an optional string ("" when absent or null).
func (f fields) optStr(key string) (string, error) {
	if isNull(f[key]) {
		return "", nil
	}
	return f.str(key)
}

// optBool reads an optional boolean (def when absent or null).
func (f fields) optBool(key string, def bool) (bool, error) {
	raw := f[key]
	if isNull(raw) {
		return def, nil
	}
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fieldError(key, "must be true or false, got %s", clip(raw))
}

// seqid reads a required seqid: a whole number from 1 to 2^53-1.
func (f fields) seqid(key string) (uint64, error) {
	raw, ok := f[key]
	if !ok || isNull(raw) {
		return 0, fieldError(key, "is required")
	}
	n, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil || n == 0 || n > maxSeqID {
		return 0, fieldError(key, "must be a whole number from 1 to %d, got %s", uint64(maxSeqID), clip(raw))
	}
	return n, nil
}

// kbidRule says what a kbid is, in the errors that refuse one.
const kbidRule = "1 to 128 letters, digits or -._~, other than \".\" and \"..\" (dot segments, which HTTP clients resolve away from the stream's URL)"

// kbid reads the KB id: 1 to 128 bytes of letters, digits and "-._~" (it
// is a URL path segment and part of a channel name).
func (f fields) kbid() (string, error) {
	s, err := f.str("kbid")
	if err != nil {
		return "", err
	}
	if !validKBID(s) {
		return "", fieldError("kbid", "must be %s, got %q", kbidRule, clipStr(s))
	}
	return s, nil
}

// validKBID: 1 to maxKBIDLen bytes of letters, digits and "-._~", and not
// "." or "..": the kbid is a segment of /v1/kb/{kbid}/notifications, where
// those two are dot segments that clients remove before sending (RFC 3986
// 5.2.4), so that KB's stream could never be requested.
func validKBID(s string) bool {
	if len(s) == 0 || len(s) > maxKBIDLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// uuid reads resource_uuid: a non-empty string of at most 256 bytes.
func (f fields) uuid() (string, error) {
	s, err := f.str("resource_uuid")
	if err != nil {
		return "", err
	}
	if s == "" || len(s) > maxUUIDLen {
		return "", fieldError("resource_uuid", "must be a non-empty string of at most %d bytes", maxUUIDLen)
	}
	return s, nil
}

func (f fields) oneOf(key string, allowed []string) (string, error) {
	s, err := f.str(key)
	if err != nil {
		return "", err
	}
	if !contains(allowed, s) {
		return "", fieldError(key, "must be one of %s, got %q", strings.Join(allowed, ", "), clipStr(s))
	}
	return s, nil
}

// writtenReq is resource_written's body.
type writtenReq struct {
	KBID, UUID, Title, Operation string
	Error                        bool
}

func parseWritten(params json.RawMessage) (writtenReq, error) {
	var r writtenReq
	f, err := decodeFields(params, "kbid", "resource_uuid", "resource_title", "operation", "error")
	if err != nil {
		return r, err
	}
	if r.KBID, err = f.kbid(); err != nil {
		return r, err
	}
	if r.UUID, err = f.uuid(); err != nil {
		return r, err
	}
	if r.Title, err = f.optStr("resource_title"); err != nil {
		return r, err
	}
	if r.Operation, err = f.oneOf("operation", operations); err != nil {
		return r, err
	}
	r.Error, err = f.optBool("error", false)
	return r, err
}

// processedReq is resource_processed's body.
type processedReq struct {
	KBID, UUID, Title  string
	WrittenSeqID       uint64
	IngestionSucceeded bool
	ProcessingErrors   bool
}

func parseProcessed(params json.RawMessage) (processedReq, error) {
	var r processedReq
	f, err := decodeFields(params, "kbid", "resource_uuid", "resource_title", "written_seqid", "ingestion_succeeded", "processing_errors")
	if err != nil {
		return r, err
	}
	if r.KBID, err = f.kbid(); err != nil {
		return r, err
	}
	if r.UUID, err = f.uuid(); err != nil {
		return r, err
	}
	if r.Title, err = f.optStr("resource_title"); err != nil {
		return r, err
	}
	if r.WrittenSeqID, err = f.seqid("written_seqid"); err != nil {
		return r, err
	}
	if r.IngestionSucceeded, err = f.optBool("ingestion_succeeded", true); err != nil {
		return r, err
	}
	r.ProcessingErrors, err = f.optBool("processing_errors", false)
	return r, err
}

// indexedReq is resource_indexed's body.
type indexedReq struct {
	KBID, UUID, Title string
	SeqID             uint64
}

func parseIndexed(params json.RawMessage) (indexedReq, error) {
	var r indexedReq
	f, err := decodeFields(params, "kbid", "resource_uuid", "resource_title", "seqid")
	if err != nil {
		return r, err
	}
	if r.KBID, err = f.kbid(); err != nil {
		return r, err
	}
	if r.UUID, err = f.uuid(); err != nil {
		return r, err
	}
	if r.Title, err = f.optStr("resource_title"); err != nil {
		return r, err
	}
	r.SeqID, err = f.seqid("seqid")
	return r, err
}

// Bounds of kb.waitFor's timeout, in seconds.
const (
	defaultWaitSeconds = 30
	maxWaitSeconds     = 300
)

// waitReq is kb.waitFor's params.
type waitReq struct {
	KBID    string
	SeqID   uint64
	Until   string
	Timeout float64 // seconds
}

func parseWait(params json.RawMessage) (waitReq, error) {
	var r waitReq
	f, err := decodeFields(params, "kbid", "seqid", "until", "timeout")
	if err != nil {
		return r, err
	}
	if r.KBID, err = f.kbid(); err != nil {
		return r, err
	}
	if r.SeqID, err = f.seqid("seqid"); err != nil {
		return r, err
	}
	if r.Until, err = f.oneOf("until", stages); err != nil {
		return r, err
	}
	r.Timeout = defaultWaitSeconds
	if raw := f["timeout"]; !isNull(raw) {
		t, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsNaN(t) || t <= 0 || t > maxWaitSeconds || raw[0] == '"' {
			return r, fieldError("timeout", "must be a number of seconds greater than 0 and at most %d, got %s", maxWaitSeconds, clip(raw))
		}
		r.Timeout = t
	}
	return r, nil
}

// clip shortens a bad value quoted in an error message.
func clip(raw json.RawMessage) string { return clipStr(string(raw)) }

func clipStr(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
