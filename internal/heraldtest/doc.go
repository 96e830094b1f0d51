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
//
// A plugin's integration tests start herald with their plugin built from
// this repository, and wait for /readyz, with StartPlugin; the Stack it
// returns kills and awaits the plugin's process and calls its HTTP methods:
//
//	s := heraldtest.StartPlugin(t, heraldtest.PluginOptions{Name: "chat", StateDir: t.TempDir()})
//	s.MustBackend(t, "addMember", map[string]any{"group_id": 1, "user_id": "u"})
//	s.Kill9(t)
package heraldtest
