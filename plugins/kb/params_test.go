package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/sdk"
	"github.com/stretchr/testify/require"
)

func TestParseWrittenDefaults(t *testing.T) {
	r, err := parseWritten(json.RawMessage(`{"kbid":"kb-1","resource_uuid":"ruuid","operation":"created","resource_title":null,"error":null}`))
	require.NoError(t, err)
	require.Equal(t, writtenReq{KBID: "kb-1", UUID: "ruuid", Operation: "created"}, r)

	p, err := parseProcessed(json.RawMessage(`{"kbid":"kb-1","resource_uuid":"ruuid","written_seqid":224278}`))
	require.NoError(t, err)
	require.Equal(t, processedReq{KBID: "kb-1", UUID: "ruuid", WrittenSeqID: 224278, IngestionSucceeded: true}, p)

	w, err := parseWait(json.RawMessage(`{"kbid":"kb-1","seqid":3,"until":"indexed"}`))
	require.NoError(t, err)
	require.Equal(t, waitReq{KBID: "kb-1", SeqID: 3, Until: "indexed", Timeout: 30}, w)
	w, err = parseWait(json.RawMessage(`{"kbid":"kb-1","seqid":3,"until":"indexed","timeout":0.25}`))
	require.NoError(t, err)
	require.Equal(t, 0.25, w.Timeout)
}

func TestParseNamesTheField(t *testing.T) {
	for _, tc := range []struct{ body, field string }{
		{`{"kbid":"kb","resource_uuid":"r","operation":"created","extra":1}`, "extra"},
		{`{"kbid":"","resource_uuid":"r","operation":"created"}`, "kbid"},
		{`{"kbid":"kb","resource_uuid":"","operation":"created"}`, "resource_uuid"},
		{`{"kbid":"kb","resource_uuid":"r","operation":null}`, "operation"},
		{`{"kbid":"kb","resource_uuid":"r","operation":"created","error":0}`, "error"},
	} {
		_, err := parseWritten(json.RawMessage(tc.body))
		e := sdk.AsError(err)
		require.Equal(t, sdk.CodeInvalidParams, e.Code, tc.body)
		require.JSONEq(t, `{"field":"`+tc.field+`"}`, string(e.Data), tc.body)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"kbid":"kb","seqid":-1,"until":"written"}`, "seqid"},
		{`{"kbid":"kb","seqid":9007199254740992,"until":"written"}`, "seqid"},
		{`{"kbid":"kb","seqid":1,"until":"written","timeout":0}`, "timeout"},
		{`{"kbid":"kb","seqid":1,"until":"written","timeout":"5"}`, "timeout"},
	} {
		_, err := parseWait(json.RawMessage(tc.body))
		require.JSONEq(t, `{"field":"`+tc.field+`"}`, string(sdk.AsError(err).Data), tc.body)
	}
	_, err := parseIndexed(json.RawMessage(`[1]`))
	require.Equal(t, sdk.CodeInvalidParams, sdk.AsError(err).Code)
}

// FuzzBodies: any body either parses into values within the rules or is an
// InvalidParams error; never a panic, never another kind of error.
func FuzzBodies(f *testing.F) {
	for _, s := range []string{
		`{"kbid":"kb","resource_uuid":"r","operation":"created","error":true,"resource_title":"t"}`,
		`{"kbid":"kb","resource_uuid":"r","written_seqid":1,"ingestion_succeeded":false,"processing_errors":true}`,
		`{"kbid":"kb","resource_uuid":"r","seqid":1}`,
		`{"kbid":"kb","seqid":1,"until":"processed","timeout":1.5}`,
		`{"kbid":null}`, `[]`, `"x"`, ``, `{"seqid":1e3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(err error) bool {
			if err == nil {
				return true
			}
			var e *sdk.Error
			if !errors.As(err, &e) || e.Code != sdk.CodeInvalidParams {
				t.Fatalf("%q: not an InvalidParams error: %v", body, err)
			}
			return false
		}
		if r, err := parseWritten(body); check(err) {
			if !validKBID(r.KBID) || r.UUID == "" || !contains(operations, r.Operation) {
				t.Fatalf("%q parsed into %+v", body, r)
			}
		}
		if r, err := parseProcessed(body); check(err) {
			if !validKBID(r.KBID) || r.WrittenSeqID == 0 || r.WrittenSeqID > maxSeqID {
				t.Fatalf("%q parsed into %+v", body, r)
			}
		}
		if r, err := parseIndexed(body); check(err) {
			if !validKBID(r.KBID) || r.SeqID == 0 || strings.ContainsRune(r.KBID, ':') {
				t.Fatalf("%q parsed into %+v", body, r)
			}
		}
		if r, err := parseWait(body); check(err) {
			if r.Timeout <= 0 || r.Timeout > maxWaitSeconds || !contains(stages, r.Until) {
				t.Fatalf("%q parsed into %+v", body, r)
			}
		}
	})
}
