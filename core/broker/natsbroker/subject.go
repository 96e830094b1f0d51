package natsbroker

import (
	"errors"
	"fmt"
	"strings"
)

// encodeToken turns a channel name into one NATS subject token. Herald's
// channel names are printable ASCII without spaces, but '.', '*' and '>'
// mean something in a subject, and '%' is the escape itself: those four
// (and, so that any string round-trips, every byte outside '!'..'~') are
// written %XX. Names without them, which is most, are returned as they are.
func encodeToken(name string) string {
	n := 0
	for i := 0; i < len(name); i++ {
		if needsEscape(name[i]) {
			n++
		}
	}
	if n == 0 {
		return name
	}
	var b strings.Builder
	b.Grow(len(name) + 2*n)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(name); i++ {
		c := name[i]
		if needsEscape(c) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func needsEscape(c byte) bool {
	return c <= ' ' || c > '~' || c == '%' || c == '.' || c == '*' || c == '>'
}

var errBadToken = errors.New("not a channel subject token")

// decodeToken is encodeToken's inverse.
func decodeToken(tok string) (string, error) {
	i := strings.IndexByte(tok, '%')
	if i < 0 {
		return tok, nil
	}
	var b strings.Builder
	b.Grow(len(tok))
	b.WriteString(tok[:i])
	for ; i < len(tok); i++ {
		c := tok[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("%w: %q ends inside an escape", errBadToken, tok)
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w: %q has a bad escape at %d", errBadToken, tok, i)
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
