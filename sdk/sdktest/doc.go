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
// params are one JSON object or array, or none.
//
// Emits are confined by Herald's own rule (package sdk/confine, which the
// host applies): a plugin emits to the channels of its manifest's prefixes
// and to those its `plugin` block's emit_channels allows, which the test
// gives with the EmitChannels option as it gives the config block to
// Start (without it, as without the key, nothing beyond the prefixes). An
// emit batch holding any other channel, the core's "config" and "$server"
// included unless "config" is listed by name, is refused whole as Herald
// refuses it: Host.Emit returns -32003 with Herald's message and data
// {"channel": ...}, and nothing of the batch is recorded or numbered. Two
// of Herald's emit checks need a running Herald and are not made here: an
// emit_channels channel "prefix:rest" passes whether or not some loaded
// plugin owns "prefix" (Herald refuses it when none does), and an open
// channel (no ":") listed in emit_channels passes whatever
// auth.open_channels says (Herald refuses it while that is false).
//
// A panic in one of the plugin's hooks is what it is under Herald, an
// internal error (-32603) to the caller and a log line, and it also fails
// the test; a test that provokes one on purpose calls AllowPanics first.
//
//	h := sdktest.Start(t, &myPlugin{}, map[string]any{"greeting": "hi"},
//		sdktest.EmitChannels("news", "alerts:*")) // the block's emit_channels, if any
//	h.Connect("c1", "alice")
//	res, err := h.Call("say", h.Client("c1"), map[string]any{"text": "hello"})
//	ns := h.Emitted()
package sdktest
