package main

import (
	"fmt"
	"strings"
)

// Channel kinds and their ID formats, exactly as the source names them. The
// kind is the channel's prefix, and the object_type of its notifications.

// channelKind is one kind of channel.
type channelKind struct {
	name  string
	parts []string // the EIDs after the prefix, in order
}

// format is the channel's ID format, e.g. "message:<messageEID>:<networkEID>".
func (k channelKind) format() string {
	return k.name + ":<" + strings.Join(k.parts, ">:<") + ">"
}

var kinds = []channelKind{
	{"network_timeline", []string{"networkEID"}},
	{"user_timeline", []string{"userEID", "networkEID"}},
	{"group_timeline", []string{"groupEID", "networkEID"}},
	{"message", []string{"messageEID", "networkEID"}},
	{"message_readers", []string{"messageEID", "networkEID"}},
	{"my_memberships", []string{"userEID", "networkEID"}},
	// The source writes <userEID> for the two group membership channels but
	// describes a group's memberships: the EID is the group's (DOMAINS.md).
	{"group_memberships", []string{"groupEID", "networkEID"}},
	{"group_admin_memberships", []string{"groupEID", "networkEID"}},
	{"alerts", []string{"globalUserEID"}},
	{"messages", []string{"globalUserEID"}},
	{"news", []string{"globalUserEID"}},
}

// prefixes are the kinds' names: the channel prefixes the plugin owns.
func prefixes() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.name
	}
	return out
}

func kindOf(name string) (channelKind, bool) {
	for _, k := range kinds {
		if k.name == name {
			return k, true
		}
	}
	return channelKind{}, false
}

// channel is a parsed channel name.
type channel struct {
	kind    channelKind
	ids     []string // one per kind.parts
	network string   // the networkEID, "" for the global user channels
}

// parseChannel reads a channel name of one of the kinds.
func parseChannel(name string) (channel, error) {
	prefix, rest, _ := strings.Cut(name, ":")
	k, ok := kindOf(prefix)
	if !ok {
		return channel{}, fmt.Errorf("%q is not a timelines channel (kinds: %s)", name, strings.Join(prefixes(), ", "))
	}
	ids := strings.Split(rest, ":")
	if len(ids) != len(k.parts) {
		return channel{}, fmt.Errorf("%q does not have the form %s", name, k.format())
	}
	for i, id := range ids {
		if !validEID(id) {
			return channel{}, fmt.Errorf("%q: %s must not be empty (form %s)", name, k.parts[i], k.format())
		}
	}
	c := channel{kind: k, ids: ids}
	if last := len(k.parts) - 1; k.parts[last] == "networkEID" {
		c.network = ids[last]
	}
	return c, nil
}
