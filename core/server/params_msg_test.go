package server

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/rpc"
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

// The core methods' params have exact member names, as the JSON-RPC
// envelope has: a member that differs only in case is not taken for the
// member (encoding/json would) but is -32602 naming it. So are the members
// of hello's client and of an entry of subscribe's since. accessToken
// keeps its camelCase (Speakap's).
func TestCoreParamsMembersAreExact(t *testing.T) {
	s := &session{}
	methods := map[string]func(json.RawMessage) ([]byte, *rpc.Error){
		"hello": s.hello, "authenticate": s.authenticate, "subscribe": s.subscribe,
		"unsubscribe": s.unsubscribeCall, "presence": s.presence,
	}
	cases := []struct{ method, params, want string }{
		{"subscribe", `{"Channels":["a"]}`, `invalid params: member "Channels" is not "channels": member names are case-sensitive`},
		{"subscribe", `{"CHANNEL":"a"}`, `invalid params: member "CHANNEL" is not "channel": member names are case-sensitive`},
		{"subscribe", `{"channel":"a","SINCE":{"a":{"seq":1,"epoch":"e"}}}`, `invalid params: member "SINCE" is not "since": member names are case-sensitive`},
		{"subscribe", `{"channel":"a","accesstoken":"t"}`, `invalid params: member "accesstoken" is not "accessToken": member names are case-sensitive`},
		{"subscribe", `{"channel":"a","Token":"t"}`, `invalid params: member "Token" is not "token": member names are case-sensitive`},
		{"subscribe", `{"channel":"a","since":{"a":{"SEQ":3,"epoch":"e"}}}`, `invalid params: member "SEQ" of since.a is not "seq": member names are case-sensitive`},
		{"unsubscribe", `{"Channel":"a"}`, `invalid params: member "Channel" is not "channel": member names are case-sensitive`},
		{"presence", `{"CHANNEL":"a"}`, `invalid params: member "CHANNEL" is not "channel": member names are case-sensitive`},
		{"authenticate", `{"Token":"t"}`, `invalid params: member "Token" is not "token": member names are case-sensitive`},
		{"hello", `{"Methods":["onNotificationReceived"]}`, `invalid params: member "Methods" is not "methods": member names are case-sensitive`},
		{"hello", `{"client":{"Name":"app","version":"1"}}`, `invalid params: member "Name" of client is not "name": member names are case-sensitive`},
		{"presence", `{"\u0043hannel":"a"}`, `invalid params: member "Channel" is not "channel": member names are case-sensitive`},
	}
	// The session is a bare one: a method that took its params goes on
	// and fails on it.
	call := func(method, params string) (err *rpc.Error) {
		defer func() {
			if recover() != nil {
				t.Errorf("%s %s: the params were taken", method, params)
			}
		}()
		_, err = methods[method](json.RawMessage(params))
		return err
	}
	for _, tc := range cases {
		err := call(tc.method, tc.params)
		if err == nil {
			continue // reported by call
		}
		require.Equal(t, -32602, err.Code, "%s %s", tc.method, tc.params)
		require.Equal(t, tc.want, err.Message, "%s %s", tc.method, tc.params)
	}

	// The exact names, an escape spelling one included, decode as before.
	for _, params := range []string{
		`{"channel":"a b","since":{"a":{"seq":3,"epoch":"e"}},"volatile":{"x":1},"token":"t","accessToken":"t"}`,
		`{"channels":["a"],"chann\u0065l":"b"}`,
	} {
		_, names, err := parseSubscribe(json.RawMessage(params))
		require.Nil(t, err, params)
		require.NotEmpty(t, names, params)
	}
	var hello helloParams
	require.Nil(t, decodeParams(json.RawMessage(`{"token":"t","methods":["m"],"client":{"name":"app","version":"1"},"volatile":{}}`), &hello))
	require.Nil(t, hello.check())

	// A member unlike every name is ignored, as the envelope's are: a
	// client written for a later Herald, or one that sends more, works.
	_, names, err := parseSubscribe(json.RawMessage(`{"channel":"a","history":true,"since":{"a":{"seq":3,"epoch":"e","at":1}}}`))
	require.Nil(t, err)
	require.Equal(t, []string{"a"}, names)
	hello = helloParams{}
	require.Nil(t, decodeParams(json.RawMessage(`{"methods":["m"],"client":{"name":"app","version":"1","build":7},"tokens":[]}`), &hello))
	require.Nil(t, hello.check())
}
