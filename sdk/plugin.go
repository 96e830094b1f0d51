package sdk

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Plugin is the one thing every plugin implements: it says who it is and
// what it offers. Everything else is an optional hook (Configurer,
// Authorizer, EventHandler, Drainer) that the SDK finds by type assertion.
type Plugin interface {
	Manifest() Manifest
}

// Manifest describes a plugin to the host.
type Manifest struct {
	Name     string   // e.g. "echo"; the host routes "<name>.<method>" by its config block name
	Version  string   // shown by `herald plugins`
	Prefixes []string // channel prefixes it owns: "echo" owns "echo:<anything>"
	Methods  []Method
	Routes   []Route
	// AllowAllSubscriptions opens every channel of Prefixes to any caller.
	// It matters only to a plugin without an Authorizer: the host refuses
	// subscriptions to the channels of such a plugin unless it sets this
	// (a plugin must say, one way or the other, who may read its channels).
	AllowAllSubscriptions bool
}

// Method is one `<plugin>.<method>` call the plugin answers.
type Method struct {
	Name string
	// BackendOnly methods are refused (-32003) to client connections and
	// served only through POST /v1/plugins/{plugin}/{method} with an API key.
	BackendOnly bool
	Handler     func(ctx context.Context, c *Call) (any, error)
	// Timeout is the longest one call may run, for a method that waits on
	// purpose (kb.waitFor); 0 leaves the host's limits.call_timeout. The
	// host takes the larger of the two, at most 10 minutes, and the call's
	// ctx carries that deadline.
	Timeout time.Duration
}

// RouteAuth says who may call an HTTP route.
type RouteAuth int

const (
	AuthAny    RouteAuth = iota // a user token or an API key
	AuthNone                    // anyone
	AuthToken                   // a user token only
	AuthAPIKey                  // an API key only
)

// Route is an HTTP route the host mounts and forwards to the plugin. The
// handler is a plain http.Handler: r.PathValue works, the ResponseWriter is
// an http.Flusher, and each Flush reaches the HTTP client at once.
// CallerFrom(r.Context()) tells who called.
type Route struct {
	Method  string // "GET", "POST", ...
	Pattern string // net/http path pattern, e.g. "/v1/kb/{kbid}/notifications"
	Auth    RouteAuth
	Handler http.Handler
}

// Configurer receives the plugin's `config` block and the Host handle, once
// per process, before any call, event or route. An error stops the plugin
// from starting and is shown to the operator. In a dry run (cfg.DryRun(),
// `herald validate`) it only decodes and checks cfg and returns: no store,
// no files, no goroutines. Return Decode's error as it is (or keep its
// text at the start of the message) so that the operator sees it at the
// key's position in the config file.
type Configurer interface {
	Configure(ctx context.Context, h Host, cfg Config) error
}

// Authorizer decides at subscribe time on channels whose prefix the plugin
// owns. It returns one Refusal per refused channel (nil: all allowed). A
// plugin without Authorizer has every subscription to its prefixes refused,
// unless its Manifest sets AllowAllSubscriptions.
type Authorizer interface {
	Authorize(ctx context.Context, c Caller, channels []string) ([]Refusal, error)
}

// EventHandler learns of connection and subscription lifecycle events, in
// order. After the plugin (re)starts, and after the host had to drop events
// because the plugin was too slow, it first gets a Reset event and then the
// current connections and subscriptions as Connected and Subscribed events
// with Replay set: rebuild presence from them. Handle events idempotently
// (a Connected for a known connection changes nothing). ctx ends when the
// host stops waiting (limits.call_timeout): a batch not handled by then is
// sent again, in order, and if that keeps failing the host resyncs the
// plugin with a Reset and a replay, so events are never silently lost.
type EventHandler interface {
	HandleEvent(ctx context.Context, h Host, ev Event)
}

// Drainer finishes in-flight work before the host stops the plugin (reload,
// shutdown). Emits made during Drain are still delivered.
type Drainer interface {
	Drain(ctx context.Context) error
}

// Caller is who made a call, a subscription or an HTTP request.
type Caller struct {
	ConnID  string         // "" for backends and HTTP routes
	UserID  string         // "" when anonymous or backend
	Claims  map[string]any // the token's claims (nil for backends)
	Token   string         // the raw token
	Backend bool           // true for API-key callers
}

// Call is one `<plugin>.<method>` call.
type Call struct {
	Method string // without the plugin name
	Caller Caller
	Params json.RawMessage
	Host   Host

	held *heldList // holds of Subscribe, returned with the reply (subscribe.go)
}

// Bind decodes the params into v; a mismatch is an InvalidParams error that
// names the bad field, ready to return from the handler.
func (c *Call) Bind(v any) error {
	if len(c.Params) == 0 || string(c.Params) == "null" {
		return InvalidParams("params are required", nil)
	}
	if err := json.Unmarshal(c.Params, v); err != nil {
		return ParamsError(err, v)
	}
	return nil
}

// Refusal is one refused channel.
type Refusal struct {
	Channel string
	Code    int // CodeForbidden, CodeUnknownNamespace, ...
	Reason  string
}

// Refuse builds a Refusal with CodeForbidden.
func Refuse(channel, reason string) Refusal {
	return Refusal{Channel: channel, Code: CodeForbidden, Reason: reason}
}

// EventKind names a lifecycle event.
type EventKind string

const (
	Connected    EventKind = "connected"
	Disconnected EventKind = "disconnected"
	Subscribed   EventKind = "subscribed"
	Unsubscribed EventKind = "unsubscribed"
	// Reset: forget every connection; replayed events follow.
	Reset EventKind = "reset"
)

// Event is a lifecycle event.
type Event struct {
	Kind     EventKind
	ConnID   string
	UserID   string
	Claims   map[string]any
	Channel  string          // Subscribed, Unsubscribed
	Volatile json.RawMessage // client-provided volatile data
	Replay   bool            // part of a replay of the current state
}

// Notification is what a plugin emits; the host adds id, seq and timestamp.
type Notification struct {
	Channel    string
	Event      string
	ObjectType string
	ObjectName string // optional
	// Object is the domain payload: json.RawMessage or []byte go out
	// verbatim, anything else is marshalled with encoding/json.
	Object any
}

// Published is where an emitted notification landed in channel history.
type Published struct {
	Channel string
	Seq     uint64
	ID      string
}

// PresenceInfo answers a presence query.
type PresenceInfo struct {
	Count int      // subscribed connections
	Users []string // distinct user ids among them
}

type callerKey struct{}
type hostKey struct{}

// CallerFrom returns the caller of an HTTP route handler's request.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// HostFrom returns the Host handle inside an HTTP route handler.
func HostFrom(ctx context.Context) (Host, bool) {
	h, ok := ctx.Value(hostKey{}).(Host)
	return h, ok
}
