package server

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseSubscribe(t *testing.T) {
	cases := []struct {
		params string
		names  []string
		code   int
	}{
		{`{"channel":"a b  c"}`, []string{"a", "b", "c"}, 0},
		{`{"channels":["a","b","a"]}`, []string{"a", "b"}, 0},
		{`{"channels":"a b"}`, []string{"a", "b"}, 0},
		{`{"channel":"a","channels":["b"]}`, []string{"a", "b"}, 0},
		{`{"channel":"a","since":{"a":{"seq":3,"epoch":"e"}}}`, []string{"a"}, 0},
		{`{"channel":"a","since":{"b":{"seq":3,"epoch":"e"}}}`, nil, -32602},
		{`{"channel":"a","since":{"a":{"seq":-1}}}`, nil, -32602},
		{`{}`, nil, -32602},
		{`{"channel":""}`, nil, -32602},
		{`{"channel":7}`, nil, -32602},
		{`{"channels":[1]}`, nil, -32602},
		{`[]`, nil, -32602},
	}
	for _, tc := range cases {
		_, names, err := parseSubscribe(json.RawMessage(tc.params))
		if tc.code != 0 {
			require.NotNil(t, err, tc.params)
			require.Equal(t, tc.code, err.Code, tc.params)
			continue
		}
		require.Nil(t, err, tc.params)
		require.Equal(t, tc.names, names, tc.params)
	}
}

func TestParsePublish(t *testing.T) {
	ns, err := parsePublish([]byte(`{"notifications":[{"channel":"a","event":"e","object_type":"t","object":{ "x" : 1 }}]}`))
	require.NoError(t, err)
	require.Len(t, ns, 1)
	require.Equal(t, `{"x":1}`, string(ns[0].Object), "objects are compacted")
	ns, err = parsePublish([]byte(`{"channel":"a","event":"entering","object_type":"t","object_name":"no matter","object":null}`))
	require.NoError(t, err)
	require.Equal(t, "no matter", ns[0].ObjectName)
}

func FuzzParseSubscribe(f *testing.F) {
	for _, s := range []string{`{"channel":"a b"}`, `{"channels":["a"],"since":{"a":{"seq":1,"epoch":"x"}}}`, `{"channel":null}`, `{"channels":{}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, params []byte) {
		p, names, err := parseSubscribe(params)
		if err != nil {
			if err.Code != -32602 {
				t.Fatalf("code %d for %q", err.Code, params)
			}
			return
		}
		if p == nil || len(names) == 0 {
			t.Fatalf("accepted %q without channels", params)
		}
		for ch := range p.Since {
			if !contains(names, ch) {
				t.Fatalf("since %q not among %v", ch, names)
			}
		}
	})
}

func FuzzParsePublish(f *testing.F) {
	for _, s := range []string{`{"channel":"a","event":"e","object_type":"t","object":{}}`, `{"notifications":[{}]}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ns, err := parsePublish(body)
		if err != nil {
			return
		}
		for _, n := range ns {
			if validChannel(n.Channel) != nil || n.Event == "" || n.ObjectType == "" || !json.Valid(n.Object) {
				t.Fatalf("accepted a bad notification %+v from %q", n, body)
			}
		}
	})
}
