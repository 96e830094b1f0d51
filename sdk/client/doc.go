// Package client is Herald's Go client: the Unichat local-interface model
// for Go services and tools.
//
// The application hands the client a local interface, a Go value whose
// methods herald may call (above all OnNotificationReceived, with batches of
// notifications, oldest first), and the client keeps one WebSocket to herald
// alive for it:
//
//	c, err := client.Dial(ctx, "ws://127.0.0.1:7512/ws", client.Options{Token: tok, Local: &App{}})
//	_, err = c.Subscribe(ctx, "news")
//	defer c.Close()
//
// It reconnects with exponential backoff and jitter, re-subscribes every
// channel and resumes each from its last seq/epoch, so the local interface
// sees every notification once and in order; when herald cannot bridge the
// gap (a resume answered recovered: false, or a $server resync) the client
// takes the channel's new position and says so through
// Options.OnUnrecovered. A channel herald ends on its own (a $server
// unsubscribed: the token expired past the grace, a plugin ended it, a
// reload removed its plugin) or
// refuses when the client re-subscribes after a reconnect is forgotten, so
// that it is not resumed, and reported through Options.OnUnsubscribed; the
// other channels are re-subscribed. A channel refused then with
// CodePluginUnavailable (-32050: the plugin that owns it is restarting) is
// not forgotten: the others go live at once, and it is asked again on the
// same connection, from its position, with the reconnect backoff between
// attempts (each reported through Options.OnError), until herald takes it
// or refuses it for another reason; a reconnect meanwhile asks for it
// again. The application's own Subscribe is all or nothing as always: a
// refusal there is its to handle. It refreshes tokens through
// Options.GetToken.
//
// Publisher and StreamPublisher are the backend side, with an API key.
// Publisher makes a request to the HTTP publish API per publish (over
// HTTP/1.1, or multiplexed on one HTTP/2 connection with H2C);
// StreamPublisher keeps one WebSocket to herald's publishing endpoint and
// pipelines the publishes of any number of goroutines over it, which costs
// herald less per publish (docs/http-api.md, docs/performance.md). It does
// not reconnect: when Done is closed, dial again.
//
//	p, err := client.DialPublisher(ctx, "ws://127.0.0.1:7512/v1/publish/ws", apiKey)
//	res, err := p.Publish(ctx, client.Publication{Channel: "news", Event: "new", ObjectType: "message", Object: msg})
//
// This package speaks the wire protocol of docs/protocol.md and knows
// nothing of herald's internals: it imports no core package.
package client
