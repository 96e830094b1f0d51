package sdk

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// KeySegment turns any id (a user's, a room's, a tenant's) into one State
// key segment, so that keys can be built from ids the plugin does not
// control. Letters, digits, '-' and '_' stay; every other byte becomes
// %XX ('%' itself included), so the mapping is one to one and
// ParseKeySegment reverses it. A result over pluginpb.MaxStateSegmentBytes
// becomes "~" and the hex SHA-256 of id instead: '~' is always escaped
// otherwise, so the two forms never meet, but such a segment cannot be
// read back. The result is always a valid segment (printable ASCII, no
// '/', no '.', which JetStream keys reserve).
func KeySegment(id string) string {
	var b strings.Builder
	b.Grow(len(id))
	for i := 0; i < len(id); i++ {
		c := id[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		const hexDigits = "0123456789ABCDEF"
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0x0f])
	}
	if b.Len() > pluginpb.MaxStateSegmentBytes || b.Len() == 0 {
		sum := sha256.Sum256([]byte(id))
		return "~" + hex.EncodeToString(sum[:])
	}
	return b.String()
}

// ParseKeySegment reverses KeySegment: false for a hashed segment (an id
// too long to keep) or one KeySegment did not make.
func ParseKeySegment(seg string) (string, bool) {
	if seg == "" || strings.HasPrefix(seg, "~") {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		if seg[i] != '%' {
			b.WriteByte(seg[i])
			continue
		}
		if i+2 >= len(seg) {
			return "", false
		}
		v, err := strconv.ParseUint(seg[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}
