package server

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// A params type error says what to write, in JSON terms: a negative seq
// needs a non-negative integer, an entry of an array is named as such.
func TestParamsTypeErrorsSayWhatToFix(t *testing.T) {
	cases := []struct {
		params string
		into   func() any
		want   string
	}{
		{`{"channel":"r1","since":{"r1":{"seq":-1,"epoch":"e"}}}`, func() any { return new(subscribeParams) },
			"invalid params: since.seq must be a non-negative integer, not number -1"},
		{`{"channel":"r1","since":{"r1":{"seq":1.5,"epoch":"e"}}}`, func() any { return new(subscribeParams) },
			"invalid params: since.seq must be a non-negative integer, not number 1.5"},
		{`{"channel":"r1","since":{"r1":{"seq":1,"epoch":7}}}`, func() any { return new(subscribeParams) },
			"invalid params: since.epoch must be a string, not number"},
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
