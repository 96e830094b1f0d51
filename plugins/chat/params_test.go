package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/heraldhq/herald/sdk"
	"github.com/stretchr/testify/require"
)

// FuzzChange: any body is either refused with an InvalidParams error that
// names a field, or accepted with a routing id that makes a valid channel
// name and an object that is valid, compact JSON.
func FuzzChange(f *testing.F) {
	for _, s := range []string{
		`{"event":"new","object_type":"message","object":` + seedMessage + `}`,
		`{"event":"deleted","object_type":"user","object":{"id":"u-1"}}`,
		`{"event":"changed","object_type":"subscription","object":{"user_id":0}}`,
		`{"event":"new","object_type":"group","object":{"id":1e3}}`,
		`{"event":"new","object_type":"group","object":{"id":"\u0000"}}`,
		`{"event":"new","object_type":"group","object":{ "id" : 7 , "x":[1, 2] }}`,
		`{}`, `[]`, `null`, `{"event":1}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		o, err := decodeObject(json.RawMessage(body), "", "event", "object_type", "object")
		if err == nil {
			var ch change
			ch, err = parseChange(o, "")
			if err == nil {
				require.True(t, validID(ch.key), "%q", ch.key)
				require.True(t, json.Valid(ch.object))
				require.NotContains(t, string(ch.object), "\n")
				c := &Chat{memb: newMemberCache()}
				for _, channel := range c.route(ch) {
					require.LessOrEqual(t, len(channel), 255)
					require.False(t, strings.ContainsAny(channel, " \t\r\n"), channel)
				}
				return
			}
		}
		var se *sdk.Error
		require.ErrorAs(t, err, &se)
		require.Equal(t, sdk.CodeInvalidParams, se.Code)
	})
}

func TestParseID(t *testing.T) {
	for in, want := range map[string]string{
		`87`: "87", `"87"`: "87", `"alice"`: "alice", `0`: "0", `999999999999999`: "999999999999999",
	} {
		got, ok := parseID(json.RawMessage(in))
		require.True(t, ok, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{`-1`, `1.0`, `1e3`, `007`, `1000000000000000`, `""`, `"a b"`, `"\u00e9"`, `true`, `{}`, `null`, `"` + strings.Repeat("x", 129) + `"`} {
		_, ok := parseID(json.RawMessage(in))
		require.False(t, ok, in)
	}
}
