package natsbroker

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTokenEncoding(t *testing.T) {
	for name, want := range map[string]string{
		"chat:group:2":    "chat:group:2",
		"a.b":             "a%2Eb",
		"x*y>z":           "x%2Ay%3Ez",
		"100%":            "100%25",
		"$server":         "$server",
		"user_timeline:7": "user_timeline:7",
	} {
		require.Equal(t, want, encodeToken(name), name)
		back, err := decodeToken(want)
		require.NoError(t, err)
		require.Equal(t, name, back)
	}
	for _, bad := range []string{"a%", "a%2", "a%2e", "%G0"} {
		_, err := decodeToken(bad)
		require.Error(t, err, bad)
	}
}

func FuzzToken(f *testing.F) {
	for _, s := range []string{"chat:group:2", "a.b", "%", "*", ">", "a b", "\x00\xff", "%25"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		tok := encodeToken(name)
		if strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("token %q of %q has a subject metacharacter or space", tok, name)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] < '!' || tok[i] > '~' {
				t.Fatalf("token %q of %q has byte %#x", tok, name, tok[i])
			}
		}
		back, err := decodeToken(tok)
		if err != nil {
			t.Fatalf("decode %q (of %q): %v", tok, name, err)
		}
		if back != name {
			t.Fatalf("round trip of %q gave %q", name, back)
		}
	})
}
