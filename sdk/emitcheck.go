package sdk

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxChannelBytes is the longest channel name Herald takes.
const maxChannelBytes = 255

// checkNotification refuses, before anything is sent, a notification the
// host would refuse or gRPC could not encode. A string field that is not
// UTF-8 fails the encoding of the whole emit stream's message, and with it
// every Emit in flight; one the host refuses fails the whole batch, which
// other Emit calls may share. i is the notification's index in its Emit.
func checkNotification(i int, n *Notification) error {
	if msg := channelProblem(n.Channel); msg != "" {
		return InvalidParams(fmt.Sprintf("emit: notification %d: %s", i, msg), map[string]any{"notification": i, "field": "channel"})
	}
	for _, f := range [...]struct {
		name, value string
		required    bool
	}{{"event", n.Event, true}, {"object_type", n.ObjectType, true}, {"object_name", n.ObjectName, false}} {
		switch {
		case f.required && f.value == "":
			return InvalidParams(fmt.Sprintf("emit to %q: notification %d: %s is required", n.Channel, i, f.name), map[string]any{"notification": i, "field": f.name})
		case !utf8.ValidString(f.value):
			return InvalidParams(fmt.Sprintf("emit to %q: notification %d: %s %q is not valid UTF-8", n.Channel, i, f.name, f.value), map[string]any{"notification": i, "field": f.name})
		}
	}
	return nil
}

// channelProblem says what is wrong with a channel name, or "": a channel
// is 1 to 255 bytes of printable ASCII without spaces (CONTRACT.md section
// 4), and "prefix:rest" has both parts.
func channelProblem(ch string) string {
	switch {
	case ch == "":
		return "channel is empty"
	case len(ch) > maxChannelBytes:
		return fmt.Sprintf("channel is %d bytes long; the limit is %d", len(ch), maxChannelBytes)
	case ch[0] == ':':
		return fmt.Sprintf("channel %q starts with ':'; a namespaced channel is prefix:rest with a prefix", ch)
	}
	for i := 0; i < len(ch); i++ {
		if c := ch[i]; c <= ' ' || c >= 0x7f {
			return fmt.Sprintf("channel %q has byte 0x%02x at %d; only printable ASCII without spaces is allowed", ch, c, i)
		}
	}
	if strings.IndexByte(ch, ':') == len(ch)-1 {
		return fmt.Sprintf("channel %q ends at its prefix; a namespaced channel is prefix:rest with a rest", ch)
	}
	return ""
}
