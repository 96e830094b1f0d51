package server

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// A params type error says what to write, in JSON terms: an entry of an
// array is named as such. (subscribe's since: TestParseSubscribe.)
func TestParamsTypeErrorsSayWhatToFix(t *testing.T) {
	cases := []struct {
		params string
		into   func() any
		want   string
	}{
		{`{"methods":[1]}`, func() any { return new(helloParams) },
			"invalid params: each entry of methods must be a string, not number"},
		{`{"methods":"onNotificationReceived"}`, func() any { return new(helloParams) },
			"invalid params: methods must be an array, not string"},
		{`{"token":5}`, func() any { return new(helloParams) },
			"invalid params: token must be a string, not number"},
	}
	for _, tc := range cases {
		err := decodeParams(json.RawMessage(tc.params), tc.into())
		require.NotNil(t, err, tc.params)
		require.Equal(t, -32602, err.Code, tc.params)
		require.Equal(t, tc.want, err.Message, tc.params)
	}
}

// hello refuses a client that is not {name, version} and an empty method
// name, which decoding alone lets through.
func TestHelloParamsCheck(t *testing.T) {
	for params, want := range map[string]string{
		`{"client":"x"}`:                            "client must be an object",
		`{"client":{"name":5}}`:                     "client must be an object",
		`{"methods":["onNotificationReceived",""]}`: "methods holds an empty name",
	} {
		var p helloParams
		require.Nil(t, decodeParams(json.RawMessage(params), &p), params)
		err := p.check()
		require.NotNil(t, err, params)
		require.Equal(t, -32602, err.Code)
		require.Contains(t, err.Message, want, params)
	}
	for _, params := range []string{`{}`, `{"client":null}`, `{"client":{"name":"app","version":"1.2"}}`, `{"methods":[]}`} {
		var p helloParams
		require.Nil(t, decodeParams(json.RawMessage(params), &p), params)
		require.Nil(t, p.check(), params)
	}
}
