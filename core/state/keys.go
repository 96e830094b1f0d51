package state

import pluginpb "github.com/heraldhq/herald/sdk/proto"

// ValidKey checks a key: segments of 1 to MaxSegmentBytes bytes of
// printable ASCII other than space and "/", joined by "/", at most
// MaxKeyBytes in all. The rule is the protocol's (pluginpb.ValidStateKey).
func ValidKey(key string) error { return pluginpb.ValidStateKey(key) }

// ValidPrefix checks a List or Watch prefix: "" or a valid key followed by "/".
func ValidPrefix(prefix string) error { return pluginpb.ValidStatePrefix(prefix) }
