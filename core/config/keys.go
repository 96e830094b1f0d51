package config

import "strings"

// IsKey reports whether path ("limits.call_timeout", "server.tls",
// "broker.kind" for the broker block's label) names a key a config file
// can set in a singleton block. Fields of Config that no key sets (such as
// State.DirSet, which records whether dir was written) are not keys: code
// that walks Config's fields to name keys (the reload's list of changed
// keys) keeps only the paths this accepts.
func IsKey(path string) bool {
	block, key, ok := strings.Cut(path, ".")
	if !ok {
		return false
	}
	switch {
	case path == "server.tls" || path == "broker.kind":
		return true
	case block == "broker":
		for _, kind := range brokerKinds {
			if _, ok := kind(&Config{})[key]; ok {
				return true
			}
		}
		return false
	}
	for _, s := range sections {
		if s.name == block {
			_, ok := s.fields(&Config{})[key]
			return ok
		}
	}
	return false
}
