package state

import (
	"fmt"
	"strings"
)

// ValidKey checks a key: segments of 1 to MaxSegmentBytes bytes of
// printable ASCII other than space and "/", joined by "/", at most
// MaxKeyBytes in all.
func ValidKey(key string) error {
	if key == "" {
		return fmt.Errorf("state key is empty")
	}
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("state key is %d bytes, over %d", len(key), MaxKeyBytes)
	}
	for i, seg := range strings.Split(key, "/") {
		if seg == "" {
			return fmt.Errorf("state key %q: segment %d is empty (no leading, trailing or double /)", key, i+1)
		}
		if len(seg) > MaxSegmentBytes {
			return fmt.Errorf("state key %q: segment %d is %d bytes, over %d", key, i+1, len(seg), MaxSegmentBytes)
		}
		for j := 0; j < len(seg); j++ {
			if c := seg[j]; c <= ' ' || c > '~' {
				return fmt.Errorf("state key %q: byte %#x is not printable ASCII", key, c)
			}
		}
	}
	return nil
}

// ValidPrefix checks a List or Watch prefix: "" or a valid key followed by "/".
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("state prefix %q must be empty or end with /", prefix)
	}
	return ValidKey(strings.TrimSuffix(prefix, "/"))
}
