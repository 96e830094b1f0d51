package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/pluginhost"
)

// A subscription that herald ends on its own (here on a plugin's behalf:
// Server.Unsubscribe is what the plugin host calls) is told to the client
// with a $server unsubscribed, after what was queued for the channel
// before, and nothing of the channel follows it. The batching delay holds
// what follows the first notification, so the drop most likely finds the
// others queued.
func TestDropIsToldAfterWhatWasQueuedForTheChannel(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Delivery.MaxDelay = 300 * time.Millisecond
	p := startPubTest(t, cfg, nil)
	ws, _, err := websocket.DefaultDialer.Dial(p.wsURL("/ws"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	send(t, ws, `{"jsonrpc":"2.0","id":1,"method":"hello","params":{"methods":["onNotificationReceived"]}}`)
	var hello struct {
		Result struct {
			SessionID string `json:"session_id"`
		}
	}
	require.NoError(t, json.Unmarshal(read(t, ws), &hello))
	send(t, ws, `{"jsonrpc":"2.0","id":2,"method":"subscribe","params":{"channels":["a","b"]}}`)
	require.Contains(t, string(read(t, ws)), `"subscriptions"`)

	for i := range 3 {
		publishTo(t, p, "a", i)
	}
	require.NoError(t, p.srv.Unsubscribe(context.Background(), "tester", hello.Result.SessionID, "a", true))
	// Not subscribed any more: nothing to tell.
	require.NoError(t, p.srv.Unsubscribe(context.Background(), "tester", hello.Result.SessionID, "a", true))
	publishTo(t, p, "a", 3)
	publishTo(t, p, "b", 4)

	var got []string
	var object json.RawMessage
	for _, n := range notes(t, ws, 5) {
		if n.Channel == ServerChannel {
			object = n.Object
		}
		got = append(got, fmt.Sprintf("%s:%s:%d", n.Channel, n.Event, n.Seq))
	}
	require.Equal(t, []string{"a:e:1", "a:e:2", "a:e:3", "$server:unsubscribed:1", "b:e:1"}, got)
	require.JSONEq(t, `{"channels":[{"channel":"a","reason":"ended by plugin tester"}]}`, string(object))
}

// note is one notification as a test reads it.
type note struct {
	Channel, Event string
	Seq            uint64
	Object         json.RawMessage
}

// notes reads ws's onNotificationReceived calls until n notifications came.
func notes(t *testing.T, ws *websocket.Conn, n int) []note {
	t.Helper()
	var out []note
	for len(out) < n {
		var m struct {
			Params struct{ Notifications []note }
		}
		require.NoError(t, json.Unmarshal(read(t, ws), &m))
		out = append(out, m.Params.Notifications...)
	}
	return out
}

// ownerPlugins is a plugin host whose plugins own the namespaces in owners
// (namespace -> plugin) and allow every subscription to them.
type ownerPlugins struct {
	noPlugins
	owners map[string]string
}

func (o ownerPlugins) Owner(ch string) (string, bool) {
	p, ok := o.owners[namespace(ch)]
	return p, ok
}

// A plugin removed from the config (Server.PluginRemoved is what the plugin
// host calls on a reload without its block) ends every connection's
// subscriptions to channels of its prefixes: each connection is told once,
// listing them, after what was queued for them before; nothing of them
// follows. Other channels, and connections holding none of its channels,
// are untouched.
func TestPluginRemovedEndsItsSubscriptions(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Delivery.MaxDelay = 300 * time.Millisecond
	p := startPubTestWith(t, cfg, nil, ownerPlugins{owners: map[string]string{"p": "gone", "pp": "gone", "q": "kept"}})
	alice := p.subscriber(t, "p:1", "pp:2", "q:1", "news")
	bob := p.subscriber(t, "q:1")

	for i := range 2 {
		publishTo(t, p, "p:1", i)
	}
	p.srv.PluginRemoved("gone", []string{"p", "pp"})
	publishTo(t, p, "q:1", 2)

	var got []string
	ns := notes(t, alice, 4)
	for _, n := range ns {
		got = append(got, fmt.Sprintf("%s:%s:%d", n.Channel, n.Event, n.Seq))
	}
	require.Equal(t, []string{"p:1:e:1", "p:1:e:2", "$server:unsubscribed:1", "q:1:e:1"}, got)
	require.JSONEq(t, `{"channels":[
		{"channel":"p:1","reason":"plugin gone was removed from the config"},
		{"channel":"pp:2","reason":"plugin gone was removed from the config"}]}`, string(ns[2].Object))
	require.Equal(t, []string{"q:1:e:1"}, func() []string {
		n := notes(t, bob, 1)
		return []string{fmt.Sprintf("%s:%s:%d", n[0].Channel, n[0].Event, n[0].Seq)}
	}(), "a connection without the plugin's channels is told nothing")

	// Dropped from the hub: a publish reaches no one there, and her own
	// unsubscribe finds nothing to end.
	publishTo(t, p, "p:1", 3)
	publishTo(t, p, "news", 4)
	require.Equal(t, "news", notes(t, alice, 1)[0].Channel)
	send(t, alice, `{"jsonrpc":"2.0","id":9,"method":"unsubscribe","params":{"channels":["p:1","pp:2"]}}`)
	require.JSONEq(t, `{"jsonrpc":"2.0","id":9,"result":{"unsubscribed":[]}}`, string(read(t, alice)))
}

// A plugin that a reload restarted without one of its prefixes
// (Server.PrefixesDropped) ends the subscriptions to that prefix's
// channels the same way, with a reason that says so.
func TestPrefixesDroppedEndsTheirSubscriptions(t *testing.T) {
	t.Parallel()
	p := startPubTestWith(t, testConfig(), nil, ownerPlugins{owners: map[string]string{"p": "x", "q": "x"}})
	alice := p.subscriber(t, "p:1", "q:1")
	p.srv.PrefixesDropped("x", []string{"p"})
	ns := notes(t, alice, 1)
	require.Len(t, ns, 1)
	n := ns[0]
	require.Equal(t, "$server unsubscribed", n.Channel+" "+n.Event)
	require.JSONEq(t, `{"channels":[{"channel":"p:1","reason":"plugin x no longer claims the prefix of this channel after a reload"}]}`, string(n.Object))
	publishTo(t, p, "q:1", 1)
	require.Equal(t, "q:1", notes(t, alice, 1)[0].Channel, "the prefix it kept keeps its subscribers")
}

// removingPlugins owns "p" on behalf of plugin "gone" until its Authorize
// runs: then a reload removes the plugin (its prefix released, then
// Server.PluginRemoved), while the subscribe that asked is still under way.
type removingPlugins struct {
	noPlugins
	srv   *Server
	mu    sync.Mutex
	owned bool
}

func (r *removingPlugins) Owner(ch string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owned && namespace(ch) == "p" {
		return "gone", true
	}
	return "", false
}

func (r *removingPlugins) Authorize(context.Context, string, pluginhost.Caller, []string) ([]pluginhost.Refusal, error) {
	r.mu.Lock()
	r.owned = false
	r.mu.Unlock()
	r.srv.PluginRemoved("gone", []string{"p"})
	return nil, nil
}

// A subscribe that the removed plugin authorized just before the reload
// removed it, and that joins after PluginRemoved looked at the connection,
// is ended all the same: the reply, then the $server unsubscribed.
func TestSubscribeRacingAPluginRemovalIsEnded(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	srv, err := New(Options{Config: cfg})
	require.NoError(t, err)
	srv.SetPlugins(&removingPlugins{srv: srv, owned: true})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	p := &pubTest{srv: srv, ts: ts}
	ws, _, err := websocket.DefaultDialer.Dial(p.wsURL("/ws"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })

	send(t, ws, `{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channels":["p:1","news"]}}`)
	require.Contains(t, string(read(t, ws)), `"channel":"p:1"`)
	publishTo(t, p, "news", 1)
	var got []string
	var object json.RawMessage
	for _, n := range notes(t, ws, 2) {
		if n.Channel == ServerChannel {
			object = n.Object
		}
		got = append(got, n.Channel+" "+n.Event)
	}
	require.Equal(t, []string{"$server unsubscribed", "news e"}, got)
	require.JSONEq(t, `{"channels":[{"channel":"p:1","reason":"plugin gone was removed from the config"}]}`, string(object))
	send(t, ws, `{"jsonrpc":"2.0","id":2,"method":"unsubscribe","params":{"channels":["p:1"]}}`)
	require.JSONEq(t, `{"jsonrpc":"2.0","id":2,"result":{"unsubscribed":[]}}`, string(read(t, ws)))
}
