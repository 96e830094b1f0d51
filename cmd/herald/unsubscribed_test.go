package main_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// A plugin that ends a connection's subscription (Host.Unsubscribe) makes
// herald tell the client with a $server unsubscribed naming the plugin:
// after the channel's notifications already queued for it, and with
// nothing of the channel after it. The client's own unsubscribe is not
// told, nor is a plugin's drop of a channel it no longer holds, nor one
// made while the client calls that plugin (it asked to leave).
func TestPluginUnsubscribeTellsTheClient(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: "delivery {\n  max_delay = \"200ms\"\n}\n" + pluginBlock("tester", "internal/testplugins/tester", "")(t)})
	alice := h.Dial(t, h.Token(t, "alice"))
	conn := presentMethods(t, alice, "onNotificationReceived")
	alice.Subscribe(t, "tester:ok", "tester:ok2", "news")
	admin := h.Dial(t, h.Token(t, "admin"))

	// Emitted, then dropped at once: with a 200 ms batching delay the three
	// are most likely still queued for alice when the plugin drops her.
	admin.MustCall(t, "tester.emitN", map[string]any{"channel": "tester:ok", "from": 1, "count": 3})
	admin.MustCall(t, "tester.leave", map[string]any{"conn": conn, "channel": "tester:ok"})
	admin.MustCall(t, "tester.emitN", map[string]any{"channel": "tester:ok", "from": 4, "count": 1})
	admin.MustCall(t, "tester.emitN", map[string]any{"channel": "tester:ok2", "from": 1, "count": 1})

	ns := alice.Notifications(t, 5)
	var got []string
	for _, n := range ns {
		got = append(got, n.Channel+" "+n.Event)
	}
	require.Equal(t, []string{"tester:ok n", "tester:ok n", "tester:ok n", "$server unsubscribed", "tester:ok2 n"}, got)
	require.Equal(t, []uint64{1, 2, 3}, []uint64{ns[0].Seq, ns[1].Seq, ns[2].Seq})
	require.Equal(t, "server", ns[3].ObjectType)
	require.JSONEq(t, `{"channels":[{"channel":"tester:ok","reason":"ended by plugin tester"}]}`, string(ns[3].Object))

	// Dropping what the connection no longer holds tells it nothing; nor
	// does its own unsubscribe.
	admin.MustCall(t, "tester.leave", map[string]any{"conn": conn, "channel": "tester:ok"})
	var un struct{ Unsubscribed []string }
	require.NoError(t, json.Unmarshal(alice.MustCall(t, "unsubscribe", map[string]any{"channel": "tester:ok2"}), &un))
	require.Equal(t, []string{"tester:ok2"}, un.Unsubscribed)
	h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
	require.Equal(t, "news", alice.Notifications(t, 1)[0].Channel)

	// Nor does a plugin method the client calls to leave (as
	// documents.unsubscribe): its reply says what ended.
	alice.Subscribe(t, "tester:ok3")
	alice.MustCall(t, "tester.leave", map[string]any{"conn": conn, "channel": "tester:ok3"})
	h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
	require.Equal(t, "news", alice.Notifications(t, 1)[0].Channel, "the client's own leave was told")
	h.Publish(t, heraldtest.N("tester:ok3", "e", "t", `{}`))
	h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
	require.Equal(t, "news", alice.Notifications(t, 1)[0].Channel, "the channel left still reaches the client")
}
