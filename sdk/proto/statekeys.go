package pluginpb

import (
	"fmt"
	"strings"
)

// ValidStateKey checks a State key (sdk.State): segments of 1 to
// MaxStateSegmentBytes bytes of printable ASCII other than space and "/",
// joined by "/", at most MaxStateKeyBytes in all. Both sides of the
// protocol apply it: the SDK's test host and Herald's.
func ValidStateKey(key string) error {
	if key == "" {
		return fmt.Errorf("state key is empty")
	}
	if len(key) > MaxStateKeyBytes {
		return fmt.Errorf("state key is %d bytes, over %d", len(key), MaxStateKeyBytes)
	}
	for i, seg := range strings.Split(key, "/") {
		if seg == "" {
			return fmt.Errorf("state key %q: segment %d is empty (no leading, trailing or double /)", key, i+1)
		}
		if len(seg) > MaxStateSegmentBytes {
			return fmt.Errorf("state key %q: segment %d is %d bytes, over %d", key, i+1, len(seg), MaxStateSegmentBytes)
		}
		for j := 0; j < len(seg); j++ {
			if c := seg[j]; c <= ' ' || c > '~' {
				return fmt.Errorf("state key %q: byte %#x is not printable ASCII", key, c)
			}
		}
	}
	return nil
}

// ValidStatePrefix checks a List or Watch prefix: "" or a valid key followed by "/".
func ValidStatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("state prefix %q must be empty or end with /", prefix)
	}
	return ValidStateKey(strings.TrimSuffix(prefix, "/"))
}

// State key bounds (sdk.State).
const (
	MaxStateKeyBytes     = 1024
	MaxStateSegmentBytes = 255
)
