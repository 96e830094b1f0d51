package pluginhost

import (
	"strings"
	"sync"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/sdk/confine"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// A plugin is code the operator may not have written, so the host confines
// what each plugin process may touch (docs/plugins.md, "Confinement"):
//
//   - it emits only to channels of the prefixes its manifest claims, and to
//     the channels its block's emit_channels lists (exact names, or a prefix
//     ending in "*"; a pattern never matches the core's own "config") that
//     a client could subscribe to: open ones while auth.open_channels is
//     on, or of a namespace that a plugin owns at the time of the emit. Its
//     dynamic channels (Host.Subscribe) are always under its own prefixes,
//     so they need no table of their own and nothing grows with them;
//   - it reads presence and subscribes or unsubscribes connections only on
//     channels of its own prefixes;
//   - it calls a client's local interface, or subscribes a connection, only
//     on a connection subscribed to one of its channels or calling it right
//     now (hostService.reaches).
//
// The rules are fixed per process: a changed manifest or block means a new
// process and a new policy. Which channels are the plugin's and which it may
// emit to is sdk/confine's rule, the one sdktest applies too, so that a
// plugin's own tests hold it to what Herald does; what only a running host
// knows (who owns a namespace now, auth.open_channels) is checked here.
type policy struct {
	plugin string
	rule   *confine.Rule
}

func newPolicy(cfg config.Plugin, man *pluginpb.Manifest) *policy {
	return &policy{plugin: cfg.Name, rule: confine.New(man.GetPrefixes(), cfg.EmitChannels)}
}

// owns reports whether channel is "prefix:rest" with a prefix of the plugin.
func (p *policy) owns(channel string) bool { return p.rule.Owns(channel) }

// checkEmit refuses a batch holding any notification outside the plugin's
// channels, in a namespace that no plugin owns (owned reports whether a
// plugin owns a prefix), or on an open channel while open channels are off
// (open is auth.open_channels at the time of the emit; the core's own
// channels are not open ones): no client could subscribe there, as a
// publish there is refused too. The whole batch is refused, as a publish
// is all or nothing; the error names the first channel refused and says
// how to allow it.
func (p *policy) checkEmit(ns []Notification, owned func(prefix string) bool, open bool) (refused string, err *rpc.Error) {
	last := ""
	for _, n := range ns {
		if n.Channel == last && last != "" { // batches mostly repeat a channel
			continue
		}
		if !p.rule.MayEmit(n.Channel) {
			return n.Channel, rpc.Errorf(rpc.CodeForbidden, "%s", confine.EmitRefusal(p.plugin, n.Channel)).
				WithData(map[string]string{"channel": n.Channel})
		}
		prefix, _, namespaced := strings.Cut(n.Channel, ":")
		if namespaced && !p.rule.OwnsPrefix(prefix) && !owned(prefix) {
			return n.Channel, rpc.Errorf(rpc.CodeForbidden,
				"plugin %q may not emit to channel %q: no plugin owns the namespace %q, so no client could subscribe to it (load the plugin that owns it, or fix emit_channels); nothing of this batch was published",
				p.plugin, n.Channel, prefix).WithData(map[string]string{"channel": n.Channel})
		}
		if !namespaced && !open && !confine.CoreChannel(n.Channel) {
			return n.Channel, rpc.Errorf(rpc.CodeForbidden,
				"plugin %q may not emit to channel %q: it is an open channel and open channels are disabled (auth.open_channels = false), so no client could subscribe to it (enable them, or fix emit_channels); nothing of this batch was published",
				p.plugin, n.Channel).WithData(map[string]string{"channel": n.Channel})
		}
		last = n.Channel
	}
	return "", nil
}

// refusalLog remembers which (plugin, channel prefix) pairs were already
// logged, so that a plugin emitting out of bounds in a loop logs once per
// prefix. Bounded: past refusalLogMax pairs, nothing more is logged (the
// metric still counts every refusal).
type refusalLog struct {
	mu   sync.Mutex
	seen map[[2]string]bool
}

const refusalLogMax = 1024

// first reports whether this is the first refusal of plugin for channel's
// prefix (the part before ":", or the whole name of an open channel).
func (l *refusalLog) first(plugin, channel string) bool {
	prefix, _, _ := strings.Cut(channel, ":")
	if len(prefix) > 64 {
		prefix = prefix[:64]
	}
	k := [2]string{plugin, prefix}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[k] || len(l.seen) >= refusalLogMax {
		return false
	}
	if l.seen == nil {
		l.seen = map[[2]string]bool{}
	}
	l.seen[k] = true
	return true
}
