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
// It holds the plugin to the host's rules where it can, with Herald's own
// checks and messages (packages sdk/confine and sdk/hostcheck, which
// Herald's host calls too):
//
//   - Call passes no params (nil, or JSON null) as {}, as Herald does, and
//     gives the call the larger of Timeout and the method's own
//     sdk.Method.Timeout (at most ten minutes); past it the error is
//     -32050 and names the bound (sdktest.Timeout, or the method's). A
//     result that is not one JSON value in UTF-8 is -32603, an empty one is
//     null; an error code outside Herald's table (sdk.Errorf(1000, ...))
//     becomes -32603 with the code named in the message, its data dropped
//     unless it is one JSON value.
//   - Authorize applies Herald's checks of the answer: a refusal of a
//     channel that was not asked fails the whole check (-32603), a channel
//     refused twice is listed once, a refusal's code outside the table is
//     -32003, and a reason over 1 KiB is cut and ends "... (cut)".
//   - Host.Subscribe and CallClient reach only a connection calling the
//     plugin right now (a Call with its Client) or subscribed to one of its
//     channels; CallClient params are one JSON object or array, or none,
//     and onNotificationReceived (Herald's own delivery) is refused with
//     -32601. Host.Subscribe, Unsubscribe, Presence and Follow act only on
//     channels of the plugin's prefixes (-32003 otherwise).
//   - Call.Subscribe answers the channel's position (its seq, and the
//     epoch Epoch) and, with Since, whether the history after it is there
//     (Since of epoch Epoch, at most the channel's seq). The subscribed and
//     unsubscribed events of the subscriptions the plugin makes or ends
//     itself (Call.Subscribe, Host.Subscribe, Host.Unsubscribe) reach its
//     EventHandler as Herald sends them, in order with the test's Events;
//     Call returns once the plugin has handled those its call caused.
//   - Handler applies each route's Auth to the caller it is given (a 403
//     for an API key on an AuthToken route, or a user token on an
//     AuthAPIKey route), gives an AuthNone route no caller, keeps the
//     Authorization and Cookie headers from the plugin, and answers a
//     request no route serves with Herald's JSON 404, or a 405 with Allow.
//   - A manifest Herald refuses fails the start, each problem in the words
//     of `herald validate`: a prefix that is invalid (a space, a ":") or
//     Herald's own ("config", "$server"), an ExpiryKeeper prefix the plugin
//     does not own, a route pattern that is malformed, declared twice, or
//     on one of Herald's own paths (/metrics, a wildcard at the root).
//   - A plugin that fails to configure (StartErr's error) is killed
//     without Drain, as Herald kills it; a configured one is drained when
//     the test ends.
//
// Emits are confined by Herald's own rule (package sdk/confine, which the
// host applies): a plugin emits to the channels of its manifest's prefixes
// and to those its `plugin` block's emit_channels allows, which the test
// gives with the EmitChannels option as it gives the config block to
// Start (without it, as without the key, nothing beyond the prefixes). An
// emit batch holding any other channel, the core's "config" and "$server"
// included unless "config" is listed by name, is refused whole as Herald
// refuses it: Host.Emit returns -32003 with Herald's message and data
// {"channel": ...}, and nothing of the batch is recorded or numbered. A
// batch with an object that is not one JSON value in UTF-8 is refused
// whole too, with -32602 and Herald's message. Two of Herald's emit checks
// need a running Herald and are not made here: an emit_channels channel
// "prefix:rest" passes whether or not some loaded plugin owns "prefix"
// (Herald refuses it when none does), and an open channel (no ":") listed
// in emit_channels passes whatever auth.open_channels says (Herald refuses
// it while that is false).
//
// Not checked here: whether a request or a connection authenticates at
// all (401), a method's BackendOnly (Herald's -32003 to a client) and a
// call of a method the manifest does not declare (Herald answers -32601
// without asking the plugin), limits (call budgets, subscriptions per
// connection, message sizes), Herald's checks of a route's response (a
// status outside 200-599, malformed headers), and what the manifest claims
// against other plugins' (a prefix or a route another plugin claims too).
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
