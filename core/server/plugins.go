package server

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
)

// Plugins is what the server needs of the plugin host.
type Plugins interface {
	// Owner returns the plugin owning channel's prefix.
	Owner(channel string) (plugin string, ok bool)
	Authorize(ctx context.Context, plugin string, caller pluginhost.Caller, channels []string) ([]pluginhost.Refusal, error)
	Call(ctx context.Context, plugin, method string, caller pluginhost.Caller, params json.RawMessage) (json.RawMessage, error)
	// KeptOnExpiry reports whether a subscription to channel outlives the
	// connection's token (its owner declared the prefix so).
	KeptOnExpiry(channel string) bool
	// Notify hands a lifecycle event to the plugins; it must not block.
	Notify(ev pluginhost.Event)
	// ServeHTTP serves the plugins' declared HTTP routes.
	ServeHTTP(w http.ResponseWriter, r *http.Request)
	// Ready reports whether every configured plugin is up.
	Ready() bool
	// Status lists the plugins for GET /v1/plugins.
	Status() []pluginhost.Status
	// Loaded reports whether a plugin of that name is configured, running
	// or not: a call to one that is not is answered without a round trip.
	Loaded(plugin string) bool
}

// noPlugins is the Plugins of a server without a plugin host.
type noPlugins struct{}

func (noPlugins) Owner(string) (string, bool) { return "", false }
func (noPlugins) Authorize(context.Context, string, pluginhost.Caller, []string) ([]pluginhost.Refusal, error) {
	return nil, nil
}
func (noPlugins) Call(_ context.Context, plugin, _ string, _ pluginhost.Caller, _ json.RawMessage) (json.RawMessage, error) {
	return nil, rpc.Errorf(rpc.CodeUnknownNamespace, "no plugin %q is loaded", plugin)
}
func (noPlugins) KeptOnExpiry(string) bool { return false }
func (noPlugins) Loaded(string) bool       { return false }
func (noPlugins) Notify(pluginhost.Event)  {}
func (noPlugins) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	writeJSONError(w, http.StatusNotFound, -32601, "no such endpoint: "+r.Method+" "+r.URL.Path)
}
func (noPlugins) Ready() bool                 { return true }
func (noPlugins) Status() []pluginhost.Status { return []pluginhost.Status{} }
