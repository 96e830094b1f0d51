// Package pluginhost starts, supervises and routes to Herald's plugins.
//
// A Manager runs one supervisor per `plugin` block. A supervisor owns the
// plugin's process across restarts: each start builds a new exec.Cmd and a
// new go-plugin client (they are single use), runs the plugin in its own
// process group, checks the handshake, reads the manifest, serves the Host
// service to it over one broker connection, configures it and replays the
// current connections to it. It watches the go-plugin client's context to
// learn of a crash at once, marks the plugin down (calls fail fast with
// -32050), and restarts it with bounded exponential backoff. A plugin that
// hangs instead of exiting is found by liveness pings (liveness.go): it is
// reported unresponsive, then killed and restarted as after a crash.
//
// Apply makes the running plugins match a config (the subscriptions to a
// removed plugin's channels end through Core.PluginRemoved; a changed one
// keeps them while it restarts); Preflight (preflight.go)
// checks what a reload's Apply would start, in dry runs, without touching
// a running plugin, so that a bad file leaves everything as it was.
//
// The Manager routes `<plugin>.<method>` calls, channel authorization (by
// the owner of the channel's prefix), lifecycle events and declared HTTP
// routes to the right plugin, and carries the plugin's emits, subscriptions,
// presence queries, client calls and follows of its own channels (history,
// then live) to the core through the Core interface (api.go). It knows nothing of WebSockets, the hub or the broker; it
// imports only the protocol packages sdk/proto, sdk/confine (which
// channels a plugin may touch) and sdk/hostcheck (its checks of what a
// plugin answers and declares: results, error codes, refusals, client
// calls, route callers, manifests), which sdktest holds plugins to as
// well, never the SDK.
package pluginhost
