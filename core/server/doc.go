// Package server assembles herald's parts into the running process: the
// WebSocket endpoint and its JSON-RPC methods (one session per connection),
// the HTTP publish and plugin APIs (HTTP/1.1 and h2c), the backends'
// publishing WebSocket (publishws.go: POST /v1/publish over one pipelined
// connection, sharing its path and idempotency table), health, metrics,
// the overload signal on the `config` channel, plugins' follows of their
// channels (follow.go: hub subscribers without a connection, bounded like
// an outbox), and graceful shutdown; and the operator's side (admin*.go): the optional second
// listener (server.admin_listen) and the admin page with its JSON API,
// whose static files are embedded. Both listeners' http.Servers come from
// httpbounds.go (server.read_timeout, server.idle_timeout, and
// delivery.write_timeout on each write of a reply) and log through
// httperrlog.go (a failing accept is a counted warning).
//
// Channel authorization and `<plugin>.<method>` calls go through the Plugins
// interface, which core/pluginhost implements; the server works without it,
// with open channels only.
package server
