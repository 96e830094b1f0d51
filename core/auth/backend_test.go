package auth

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// A backend key is one of the configured keys, exactly; an empty key never
// is, even where the configuration lists one.
func TestAPIKeysValid(t *testing.T) {
	keys := NewAPIKeys([]string{"first-key", "", "second-key"})
	for key, want := range map[string]bool{
		"first-key":   true,
		"second-key":  true,
		"":            false,
		"first-ke":    false,
		"first-key ":  false,
		"FIRST-KEY":   false,
		"second-keyx": false,
	} {
		require.Equal(t, want, keys.Valid(key), "key %q", key)
	}
	require.False(t, NewAPIKeys(nil).Valid(""), "no keys configured: nothing is valid")
	require.False(t, NewAPIKeys([]string{""}).Valid(""), "an empty configured key is ignored")
}

// The scheme is case-insensitive (RFC 7235) and the token is trimmed; any
// other scheme, or none, gives no token.
func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc":     "abc",
		"bearer abc":     "abc",
		"BEARER  abc  ":  "abc",
		"Bearer ":        "",
		"Bearer":         "",
		"Basic YWxhZGRp": "",
		"abc":            "",
		"":               "",
	} {
		r := httptest.NewRequest("POST", "/v1/publish", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		require.Equal(t, want, BearerToken(r), "Authorization %q", header)
	}
}

// A WebSocket upgrade is allowed without an Origin (not a browser), from a
// configured origin (compared case-insensitively, a configured trailing
// slash ignored), from the server's own host, or from anywhere with "*".
func TestOriginsCheck(t *testing.T) {
	origins := NewOrigins([]string{"http://localhost:8080/", "https://App.Example.com"})
	for _, tc := range []struct {
		origin, host string
		want         bool
	}{
		{"", "127.0.0.1:7512", true},
		{"http://localhost:8080", "127.0.0.1:7512", true},
		{"https://app.example.com", "127.0.0.1:7512", true},
		{"HTTPS://APP.EXAMPLE.COM", "127.0.0.1:7512", true},
		{"http://127.0.0.1:7512", "127.0.0.1:7512", true}, // same host
		{"http://localhost:8081", "127.0.0.1:7512", false},
		{"https://app.example.com.evil.net", "127.0.0.1:7512", false},
		{"http://evil.example", "127.0.0.1:7512", false},
		{"null", "127.0.0.1:7512", false},
		{"http://127.0.0.1:7513", "127.0.0.1:7512", false},
	} {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.Host = tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		require.Equal(t, tc.want, origins.Check(r), "Origin %q, Host %q", tc.origin, tc.host)
	}
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Origin", "http://anywhere.example")
	require.True(t, NewOrigins([]string{"*"}).Check(r), `"*" allows every origin`)
	require.False(t, NewOrigins(nil).Check(r), "no origins configured: only the server's own host")
}
