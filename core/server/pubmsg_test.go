package server

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// What a wrong publish body is told: the field or the shape to fix, in
// the API's words, never a Go type.
func TestParsePublishErrorsSayWhatToFix(t *testing.T) {
	ok := `{"channel":"a","event":"e","object_type":"t","object":{}}`
	for body, want := range map[string]string{
		`[` + ok + `]`:                         `body: must be a JSON object (one notification, or {"notifications": [...]}), not an array`,
		`null`:                                 `body: must be a JSON object (one notification, or {"notifications": [...]}), not null`,
		`"x"`:                                  `body: must be a JSON object (one notification, or {"notifications": [...]}), not a string`,
		`{"notifications":[` + ok + `],"x":1}`: `x: not a field beside notifications: a body is one notification or {"notifications": [...]}, not both`,
		`{"notifications":[` + ok + `],"channel":"b","event":"e","object_type":"t"}`: `not a field beside notifications`,
		`{"notifications":[5]}`:               `notifications[0]: must be a JSON object`,
		`{"notifications":[{"channel":"a"}]}`: `notifications[0].event: is required`,
	} {
		_, err := parsePublish([]byte(body))
		require.Error(t, err, body)
		require.Contains(t, err.Error(), want, body)
		require.NotContains(t, err.Error(), "Go ", body)
	}
}

func TestChannelNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"news": true, "chat:group:2": true, "a:": false, "chat:group:": true, "a:b:": true, string(make([]byte, 255)): false,
		"": false, ":x": false, ":": false, "a b": false, "é": false,
	} {
		require.Equal(t, ok, validChannel(name) == nil, "%q", name)
	}
	long := make([]byte, 255)
	for i := range long {
		long[i] = 'a'
	}
	require.NoError(t, validChannel(string(long)))
	require.Error(t, validChannel(string(long)+"a"))
}
