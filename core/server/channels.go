package server

import (
	"fmt"
	"strings"
)

// Channel names: 1 to 255 bytes of printable ASCII without spaces.
const maxChannelLen = 255

// ServerChannel is herald's own channel: it needs no subscription.
const ServerChannel = "$server"

// ConfigChannel is the core-owned channel of load signals.
const ConfigChannel = "config"

func validChannel(name string) error {
	if len(name) == 0 {
		return fmt.Errorf("channel name is empty")
	}
	if len(name) > maxChannelLen {
		return fmt.Errorf("channel name is %d bytes long; the limit is %d", len(name), maxChannelLen)
	}
	if name[0] == ':' {
		// Not open (it has a ':') and of no namespace: no one could own it.
		return fmt.Errorf("channel name %q starts with ':'; a namespaced channel is prefix:rest with a prefix", name)
	}
	if i := strings.IndexByte(name, ':'); i == len(name)-1 {
		// "echo:": a plugin method that builds prefix + user id for a
		// caller without one (a backend) would make it; nobody could
		// subscribe to it.
		return fmt.Errorf("channel name %q ends at its prefix; a namespaced channel is prefix:rest with a rest", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= 0x20 || c >= 0x7f {
			return fmt.Errorf("channel name %q has byte 0x%02x at %d; only printable ASCII without spaces is allowed", name, c, i)
		}
	}
	return nil
}

// namespace returns the prefix of "prefix:rest", or "" for an open channel.
func namespace(channel string) string {
	if i := strings.IndexByte(channel, ':'); i >= 0 {
		return channel[:i]
	}
	return ""
}

// splitChannels accepts "a b c" or ["a","b"] already decoded into names.
func splitChannels(s string) []string { return strings.Fields(s) }
