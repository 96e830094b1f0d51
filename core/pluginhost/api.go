package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// This file fixes the boundary between the plugin host and the rest of the
// core. core/server implements Core and drives a *Manager; nothing here knows
// about WebSockets, the hub or the broker.

// Caller is who makes a call or a subscription: a client connection with its
// identity, or a backend holding an API key.
type Caller struct {
	ConnID  string          // "" for backends and HTTP routes
	UserID  string          // "" when anonymous or backend
	Claims  json.RawMessage // the token's claims, a JSON object as the token has it (nil for backends)
	Token   string          // the raw token, for plugins that check their own claims
	Backend bool            // true for API-key callers (backend rights)
	// Until is when a token caller's rights end: the token's expiry plus
	// auth.expiry_grace, as for a WebSocket connection's subscriptions.
	// An HTTP route's request (a stream, such as kb's) ends then. Zero:
	// no end (API keys, tokens without exp).
	Until time.Time
}

// Notification is what a plugin emits: the host adds id, seq and timestamp.
type Notification struct {
	Channel    string
	Event      string
	ObjectType string
	ObjectName string          // optional, e.g. chat's "entering"
	Object     json.RawMessage // the domain payload, verbatim
}

// Published is where an emitted notification landed.
type Published struct {
	Channel string
	Seq     uint64
	ID      string
}

// Refusal is one channel a plugin refused at subscribe time.
type Refusal struct {
	Channel string
	Code    int // rpc.CodeForbidden, rpc.CodeUnknownNamespace, ...
	Reason  string
}

// EventKind names a connection or subscription lifecycle event.
type EventKind string

const (
	Connected    EventKind = "connected"
	Disconnected EventKind = "disconnected"
	Subscribed   EventKind = "subscribed"
	Unsubscribed EventKind = "unsubscribed"
)

// Event is a lifecycle event a plugin may want to learn of.
type Event struct {
	Kind     EventKind
	ConnID   string
	UserID   string
	Claims   json.RawMessage // as Caller.Claims
	Channel  string          // for subscribed/unsubscribed
	Volatile json.RawMessage // client-provided volatile data, if any
}

// Connection is one live connection with its subscriptions, replayed to a
// plugin after it (re)starts so that it can rebuild presence.
type Connection struct {
	ConnID   string
	UserID   string
	Claims   json.RawMessage // as Caller.Claims
	Volatile json.RawMessage
	Channels []string
}

// PresenceInfo answers a presence query.
type PresenceInfo struct {
	Count int
	Users []string
}

// Core is what plugins may ask of the host. core/server implements it.
type Core interface {
	// Emit publishes notifications and returns once they are in history.
	// ns is reused once Emit returns, and the Objects point into the
	// received message, which is reused too: copy what must outlive the
	// call (never retain an Object, nor append to one).
	Emit(ctx context.Context, plugin string, ns []Notification) ([]Published, error)
	// Subscribe adds a connection to a channel without asking its owner.
	Subscribe(ctx context.Context, connID, channel string) error
	// Unsubscribe ends a connection's subscription on plugin's behalf.
	// When tell is set the client is told, with plugin named as the
	// reason; it is not when the connection is calling the plugin right
	// now (it asked to leave, e.g. documents.unsubscribe: the call's reply
	// says what ended).
	Unsubscribe(ctx context.Context, plugin, connID, channel string, tell bool) error
	// PluginRemoved ends every subscription, on every connection of this
	// node, to a channel of prefixes: plugin owned them until a reload
	// removed its block from the config, and a plugin that claims them
	// later must not inherit subscribers it never authorized. Each
	// connection is told once, as Unsubscribe tells it, after what was
	// already queued for those channels. Apply calls it after the plugin
	// stopped and its prefixes were released, before it starts any plugin.
	PluginRemoved(plugin string, prefixes []string)
	// PrefixesDropped ends the subscriptions to channels of prefixes as
	// PluginRemoved does, for a plugin that a reload restarted (its block
	// changed) with a manifest that no longer claims them. Apply calls it
	// once the new version runs, before the prefixes are released.
	PrefixesDropped(plugin string, prefixes []string)
	Presence(ctx context.Context, channel string) (PresenceInfo, error)
	// CallClient calls a method of a connection's local interface.
	CallClient(ctx context.Context, connID, method string, params json.RawMessage) (json.RawMessage, error)
	// SubscribedTo reports whether connection connID exists and holds a
	// subscription to a channel for which match is true (the plugin host
	// lets a plugin call only connections subscribed to its channels).
	SubscribedTo(connID string, match func(channel string) bool) bool
	// Connections lists the current connections and their subscriptions.
	Connections() []Connection
	// AuthenticateHTTP identifies the caller of a plugin HTTP route from its
	// request (token in ?token= or Authorization, or an API key).
	AuthenticateHTTP(r *http.Request) (Caller, error)
	// Follow joins channel's history after since (nil: from now on) to its
	// live stream, as a resuming subscribe does, for a plugin (the host
	// checks that the plugin owns channel). The follower is bounded like a
	// connection's outbox, in notifications (delivery.outbox_limit) and in
	// bytes (maxBytes: what one reply to the plugin may carry, so that
	// whatever is pending always fits in one). Close it when done.
	Follow(ctx context.Context, channel string, since *Position, maxBytes int) (Follower, error)
}

// Position is a point in a channel's stream (its seq and epoch).
type Position struct {
	Seq   uint64
	Epoch string
}

// FollowedNotification is one published notification as a follower gets it.
type FollowedNotification struct {
	ID         string
	Seq        uint64
	Timestamp  int64 // epoch milliseconds
	Event      string
	ObjectType string
	ObjectName string
	Object     json.RawMessage
}

// ErrFollowerSlow ends a follower whose pending notifications passed its
// bounds: it would otherwise grow without limit.
var ErrFollowerSlow = errors.New("follower fell too far behind (over delivery.outbox_limit notifications, or over its byte bound, waiting)")

// Follower is a live view of one channel, from a position on.
type Follower interface {
	// Start is the last seq before the first notification Next returns, and
	// whether the since it was asked for could be recovered (true without
	// since). When it could not, Start is the channel's current position.
	Start() (Position, bool)
	// Next waits until notifications are pending and returns all of them,
	// oldest first. It fails with ErrFollowerSlow when the follower fell too
	// far behind, with ctx's error when ctx ends.
	Next(ctx context.Context) ([]FollowedNotification, error)
	// Close removes the follower; Next fails afterwards. Safe to call twice.
	Close()
	// Dropped reports whether the host ended the follower because it fell
	// behind its bounds (whether or not Next has returned that yet).
	Dropped() bool
}
