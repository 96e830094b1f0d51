package jsstate

import (
	"fmt"
	"strings"

	"github.com/heraldhq/herald/core/state"
)

// A state key's segments become the tokens of a JetStream key ("/" → ".").
// A token keeps the bytes [-_=a-zA-Z0-9] as they are and writes every other
// byte as "/" and two upper-case hex digits: "/" is a JetStream key byte
// that never appears in a segment, so the mapping is reversible and each
// key has one encoding. Escaping does not keep byte order (":" sorts after
// "9" but "/3A" before it), so List sorts what it decodes.
const escapeByte = '/'

const hexDigits = "0123456789ABCDEF"

// plain says whether a segment byte stands for itself in a token.
func plain(c byte) bool {
	return c == '-' || c == '_' || c == '=' ||
		'0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// encodeKey maps a valid state key to its JetStream key.
func encodeKey(key string) string {
	var b strings.Builder
	b.Grow(len(key) + len(key)/2)
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c == '/':
			b.WriteByte('.')
		case plain(c):
			b.WriteByte(c)
		default:
			b.WriteByte(escapeByte)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xF])
		}
	}
	return b.String()
}

// encodePrefix maps a List or Watch prefix ("" or ending in "/") to a KV
// filter: every key, or every key below the prefix's tokens.
func encodePrefix(prefix string) string {
	if prefix == "" {
		return ">"
	}
	return encodeKey(strings.TrimSuffix(prefix, "/")) + ".>"
}

// decodeKey maps a JetStream key back to its state key; a key this package
// did not encode is an error.
func decodeKey(k string) (string, error) {
	b := make([]byte, 0, len(k))
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case c == '.':
			b = append(b, '/')
		case plain(c):
			b = append(b, c)
		case c == escapeByte:
			if i+2 >= len(k) {
				return "", fmt.Errorf("jetstream key %q: escape cut short", k)
			}
			hi, lo := strings.IndexByte(hexDigits, k[i+1]), strings.IndexByte(hexDigits, k[i+2])
			if hi < 0 || lo < 0 {
				return "", fmt.Errorf("jetstream key %q: bad escape %q", k, k[i:i+3])
			}
			v := byte(hi<<4 | lo)
			if plain(v) || v == '/' {
				return "", fmt.Errorf("jetstream key %q: needless escape %q", k, k[i:i+3])
			}
			b = append(b, v)
			i += 2
		default:
			return "", fmt.Errorf("jetstream key %q: byte %#x", k, c)
		}
	}
	key := string(b)
	if err := state.ValidKey(key); err != nil {
		return "", fmt.Errorf("jetstream key %q: %w", k, err)
	}
	return key, nil
}
