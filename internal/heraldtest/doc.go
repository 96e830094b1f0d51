// Package heraldtest starts the real herald binary (and real plugin
// binaries) on a free loopback port for integration tests, and talks to it
// as clients and backends do: WebSocket JSON-RPC and the HTTP API.
//
// A test is a few lines:
//
//	h := heraldtest.Start(t, heraldtest.Options{})
//	c := h.Dial(t, h.Token(t, "alice"))
//	c.Subscribe(t, "news")
//	h.Publish(t, heraldtest.N("news", "new", "message", `{"id":1}`))
//	ns := c.Notifications(t, 1)
package heraldtest
