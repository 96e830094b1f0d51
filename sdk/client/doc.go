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
// gap it says so through Options.OnUnrecovered. It refreshes tokens through
// Options.GetToken. Publisher is the backend side: the HTTP publish API.
//
// This package speaks the wire protocol of docs/protocol.md and knows
// nothing of herald's internals: it imports no core package.
package client
