package jsstate

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/state"
)

// jsKey is what JetStream accepts as a KV key (nats.go's rule).
var jsKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

func validJSKey(k string) bool {
	return jsKey.MatchString(k) && !strings.HasPrefix(k, ".") && !strings.HasSuffix(k, ".") && !strings.Contains(k, "..")
}

func TestKeyEncoding(t *testing.T) {
	for key, want := range map[string]string{
		"a":          "a",
		"a/b":        "a.b",
		"a.b":        "a/2Eb",
		"a:b/c%d":    "a/3Ab.c/25d",
		"x-_=Z9":     "x-_=Z9",
		"~@*>":       "/7E/40/2A/3E",
		"a/b/c.d/e~": "a.b.c/2Ed.e/7E",
	} {
		require.Equal(t, want, encodeKey(key), "encode %q", key)
		got, err := decodeKey(want)
		require.NoError(t, err)
		require.Equal(t, key, got)
	}
	require.Equal(t, ">", encodePrefix(""))
	require.Equal(t, "a.b/3A.>", encodePrefix("a/b:/"))
	for _, bad := range []string{"", ".a", "a.", "a..b", "/", "/2", "/2e", "/41", "/2F", "a b", "a*", "/ZZ"} {
		_, err := decodeKey(bad)
		require.Error(t, err, "decode %q", bad)
	}
}

func FuzzKeyEscape(f *testing.F) {
	for _, s := range []string{"a", "a/b", "a.b", "a:b/%~@", "=/3A", "/2E", "a..b", strings.Repeat("~", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if state.ValidKey(s) == nil {
			enc := encodeKey(s)
			if !validJSKey(enc) {
				t.Fatalf("encode %q = %q: not a JetStream key", s, enc)
			}
			dec, err := decodeKey(enc)
			if err != nil || dec != s {
				t.Fatalf("decode(encode(%q)) = %q, %v", s, dec, err)
			}
			if p := s + "/"; state.ValidPrefix(p) == nil && !strings.HasPrefix(encodeKey(s+"/x"), strings.TrimSuffix(encodePrefix(p), ">")) {
				t.Fatalf("prefix %q does not filter its keys", p)
			}
		}
		// Every JetStream key decodes to at most one state key, which
		// encodes back to it.
		if dec, err := decodeKey(s); err == nil {
			if enc := encodeKey(dec); enc != s {
				t.Fatalf("encode(decode(%q)) = %q", s, enc)
			}
		}
	})
}
