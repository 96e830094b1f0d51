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
