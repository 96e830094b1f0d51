package confine

import (
	"fmt"
	"strings"
)

// Rule is one plugin's channels: the prefixes its manifest claims and the
// entries of its block's emit_channels. The zero Rule allows nothing. A
// Rule is read only once made, so any number of goroutines may use it.
type Rule struct {
	prefixes map[string]bool
	exact    map[string]bool
	patterns []string // emit_channels entries ending in "*", without it
}

// New makes the rule of a plugin that claims prefixes and whose block lists
// emitChannels (exact names, or a prefix ending in "*").
func New(prefixes, emitChannels []string) *Rule {
	r := &Rule{prefixes: make(map[string]bool, len(prefixes)), exact: map[string]bool{}}
	for _, pre := range prefixes {
		r.prefixes[pre] = true
	}
	for _, ch := range emitChannels {
		if pat, ok := strings.CutSuffix(ch, "*"); ok {
			r.patterns = append(r.patterns, pat)
		} else {
			r.exact[ch] = true
		}
	}
	return r
}

// OwnsPrefix reports whether the plugin claims prefix.
func (r *Rule) OwnsPrefix(prefix string) bool { return r.prefixes[prefix] }

// Owns reports whether channel is "prefix:rest" with a prefix of the plugin.
func (r *Rule) Owns(channel string) bool {
	prefix, _, ok := strings.Cut(channel, ":")
	return ok && r.prefixes[prefix]
}

// coreChannels are the core's own: no emit_channels pattern reaches them
// (the operator may still list "config" by its exact name).
var coreChannels = map[string]bool{"config": true, "$server": true}

// CoreChannel reports whether channel is one of the core's own ("config",
// "$server"), which no plugin owns and no pattern reaches.
func CoreChannel(channel string) bool { return coreChannels[channel] }

// MayEmit reports whether the plugin may emit to channel: one of its own
// prefixes, an emit_channels exact name, or a channel starting with an
// emit_channels pattern's prefix, the core's channels excepted.
func (r *Rule) MayEmit(channel string) bool {
	if r.Owns(channel) || r.exact[channel] {
		return true
	}
	if coreChannels[channel] {
		return false
	}
	for _, pat := range r.patterns {
		if strings.HasPrefix(channel, pat) {
			return true
		}
	}
	return false
}

// EmitRefusal is the message of the error (-32003, data {"channel": ...})
// that refuses a plugin's emit batch because MayEmit refused one of its
// channels.
func EmitRefusal(plugin, channel string) string {
	return fmt.Sprintf("plugin %q may not emit to channel %q: a plugin emits to the channels of its own prefixes and to those its plugin block lists in emit_channels; nothing of this batch was published",
		plugin, channel)
}

// NotOwned is the message of the error (-32003) that refuses a plugin an
// act on a channel that is not of its own prefixes (Owns): what says which
// ("read the presence of", "subscribe connections to", "unsubscribe
// connections from", "follow").
func NotOwned(plugin, what, channel string) string {
	return fmt.Sprintf("plugin %q may %s only channels of its own prefixes, not %q", plugin, what, channel)
}

// CheckEntry checks one emit_channels entry: an exact channel name, or a
// pattern that ends in "*" and matches every channel starting with what
// precedes it ("news:*", "alerts*"). A pattern needs at least one character
// before the "*", so that no entry opens every channel at once.
func CheckEntry(ch string) error {
	name, pattern := strings.CutSuffix(ch, "*")
	switch {
	case ch == "":
		return fmt.Errorf("channel name is empty")
	case pattern && name == "":
		return fmt.Errorf(`"*" alone is not allowed: name the channels, or a prefix such as "news:*"`)
	case len(ch) > 255:
		return fmt.Errorf("channel name is %d bytes long; the limit is 255", len(ch))
	case strings.Contains(name, "*"):
		return fmt.Errorf("%q: \"*\" is allowed only at the end", ch)
	case ch == "$server":
		return fmt.Errorf(`"$server" is herald's own channel; no plugin emits to it`)
	}
	for i := 0; i < len(ch); i++ {
		if c := ch[i]; c <= 0x20 || c >= 0x7f {
			return fmt.Errorf("channel name %q has byte 0x%02x at %d; only printable ASCII without spaces is allowed", ch, c, i)
		}
	}
	return nil
}
