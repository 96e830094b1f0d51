package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// handMade signs payload (JSON as given, spaces and all) with HS256.
func handMade(t *testing.T, secret, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// Plugins get the claims as JSON: Identity.Claims is the token's payload,
// compacted, and decodes to what the token carries.
func TestVerifyKeepsThePayloadAsCompactJSON(t *testing.T) {
	tokens := NewTokens("s")
	for _, tc := range []struct {
		name, payload, want string
	}{
		{"compact", `{"sub":"alice","nick":"ivan","networks":["n1","n2"],"admin":true}`,
			`{"sub":"alice","nick":"ivan","networks":["n1","n2"],"admin":true}`},
		{"spaced", "{ \"sub\" : \"alice\",\n \"n\": [1, 2.5, {\"x\": null}] }",
			`{"sub":"alice","n":[1,2.5,{"x":null}]}`},
		{"big number kept exact", `{"sub":"bob","id":12345678901234567890}`,
			`{"sub":"bob","id":12345678901234567890}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tokens.Verify(handMade(t, "s", tc.payload))
			require.NoError(t, err)
			require.Equal(t, tc.want, string(id.Claims))
			require.Equal(t, len(id.Claims), cap(id.Claims), "no spare capacity kept")
		})
	}

	minted, err := tokens.Mint("carol", 0, map[string]any{"kbs": []string{"a"}, "html": "<b>&"})
	require.NoError(t, err)
	id, err := tokens.Verify(minted)
	require.NoError(t, err)
	require.Equal(t, "carol", id.UserID)
	var got map[string]any
	require.NoError(t, json.Unmarshal(id.Claims, &got))
	require.Equal(t, "carol", got["sub"])
	require.Equal(t, []any{"a"}, got["kbs"])
	require.Equal(t, "<b>&", got["html"])
	require.Contains(t, got, "iat")
}

// A token read from a handshake's query string is a substring of the
// request line: the identity a connection keeps must hold a copy, or the
// whole line stays in memory for the connection's life.
func TestVerifyKeepsACopyOfTheToken(t *testing.T) {
	tokens := NewTokens("s")
	tok, err := tokens.Mint("alice", 0, nil)
	require.NoError(t, err)
	line := "GET /v1/ws?token=" + tok + " HTTP/1.1"
	inLine := line[len("GET /v1/ws?token=") : len(line)-len(" HTTP/1.1")]
	id, err := tokens.Verify(inLine)
	require.NoError(t, err)
	require.Equal(t, tok, id.Token)
	start := uintptr(unsafe.Pointer(unsafe.StringData(line)))
	p := uintptr(unsafe.Pointer(unsafe.StringData(id.Token)))
	require.False(t, p >= start && p < start+uintptr(len(line)), "Identity.Token points into the request line")
}

func TestVerifyRefuses(t *testing.T) {
	tokens := NewTokens("s")
	for payload, want := range map[string]string{
		`{"nick":"x"}`: `no "sub" claim`,
		`{"sub":7}`:    `"sub" claim must be a string`,
		`[1]`:          "malformed",
	} {
		_, err := tokens.Verify(handMade(t, "s", payload))
		require.Error(t, err, payload)
		require.True(t, strings.Contains(err.Error(), want), "%s: %v", payload, err)
	}
	_, err := tokens.Verify(handMade(t, "other", `{"sub":"a"}`))
	require.ErrorContains(t, err, "signature invalid")

	// Another algorithm is named, with the one herald takes.
	enc := base64.RawURLEncoding
	for _, alg := range []string{"HS512", "none"} {
		tok := enc.EncodeToString([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(`{"sub":"a"}`)) + ".c2ln"
		_, err = tokens.Verify(tok)
		require.ErrorContains(t, err, "token signed with "+alg+": herald accepts HS256 tokens only")
	}
}

// Mint refuses what would sign something other than what was asked: a
// negative ttl (once a token without exp, which never expired) and extra
// claims that it sets itself.
func TestMintRefusesNegativeTTLAndReservedClaims(t *testing.T) {
	tokens := NewTokens("s")
	_, err := tokens.Mint("alice", -time.Hour, nil)
	require.ErrorContains(t, err, "negative")
	for _, k := range []string{"sub", "exp", "iat"} {
		_, err := tokens.Mint("alice", time.Hour, map[string]any{k: "x"})
		require.ErrorContains(t, err, `"`+k+`"`, k)
	}
	tok, err := tokens.Mint("alice", time.Hour, map[string]any{"kbs": "a"})
	require.NoError(t, err)
	id, err := tokens.Verify(tok)
	require.NoError(t, err)
	require.Contains(t, string(id.Claims), `"exp"`)
}
