// Package sdktest runs a plugin inside a test, over the real protocol: the
// plugin is served by go-plugin in-process, the harness dispenses it with a
// real go-plugin client over a real gRPC connection, and serves the Host
// side through the same broker connection Herald uses. Nothing is faked: the
// harness's host side is a recorder that numbers emitted notifications per
// channel as Herald does, tracks the subscriptions that the test's events
// and the plugin's Host.Subscribe calls create, answers Presence from them,
// hands CallClient requests to a function the test sets, and serves
// sdk.FollowChannel from what was emitted (every channel has the epoch
// Epoch and keeps all of its notifications).
//
// It holds the plugin to the host's rules where it can: Host.Subscribe and
// CallClient reach only a connection calling the plugin right now (a Call
// with its Client) or subscribed to one of its channels, and CallClient
// params are one JSON object or array, or none. It does not know the
// config block, so what emit_channels allows beyond the plugin's own
// prefixes is not checked here.
//
// A panic in one of the plugin's hooks is what it is under Herald, an
// internal error (-32603) to the caller and a log line, and it also fails
// the test; a test that provokes one on purpose calls AllowPanics first.
//
//	h := sdktest.Start(t, &myPlugin{}, map[string]any{"greeting": "hi"})
//	h.Connect("c1", "alice")
//	res, err := h.Call("say", h.Client("c1"), map[string]any{"text": "hello"})
//	ns := h.Emitted()
package sdktest
