package sdk

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

type pePlace struct {
	Index string `json:"index"`
}

type peOptions struct {
	Scope *string `json:"scope"`
	Since *struct {
		Seq uint64 `json:"seq"`
	} `json:"since"`
}

type peParams struct {
	pePlace
	peOptions
	Body  json.RawMessage `json:"body"`
	Named struct {
		X int `json:"x"`
	} `json:"named"`
	List   []struct{ Y bool } `json:"list"`
	Ratio  float64
	NoTags string
}

// A wrong type is named by its path in the params as the caller wrote them,
// never by an embedded struct's Go name or a Go type.
func TestParamsErrorNamesTheJSONPath(t *testing.T) {
	for in, want := range map[string]string{
		`{"index":5}`:           "params.index: expected a string, got number",
		`{"scope":true}`:        "params.scope: expected a string, got bool",
		`{"since":{"seq":"1"}}`: "params.since.seq: expected a non-negative integer, got string",
		`{"since":{"seq":-1}}`:  "params.since.seq: expected a non-negative integer, got number -1",
		`{"named":{"x":"a"}}`:   "params.named.x: expected an integer, got string",
		`{"named":5}`:           "params.named: expected an object, got number",
		`{"list":[{"Y":1}]}`:    "params.list.Y: expected a boolean, got number",
		`{"list":{}}`:           "params.list: expected an array, got object",
		`{"Ratio":"x"}`:         "params.Ratio: expected a number, got string",
		`{"notags":1}`:          "params.NoTags: expected a string, got number",
	} {
		var p peParams
		e := ParamsError(json.Unmarshal([]byte(in), &p), &p)
		require.NotNil(t, e, in)
		require.Equal(t, CodeInvalidParams, e.Code, in)
		require.Equal(t, want, e.Message, in)
	}
	var p peParams
	e := ParamsError(json.Unmarshal([]byte(`{"index":`), &p), &p)
	require.Equal(t, "params: unexpected end of JSON input", e.Message)
	require.Nil(t, ParamsError(nil, &p))
}
