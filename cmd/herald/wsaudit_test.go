package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// When the grace after a token's expiry ends, only the connection's private
// subscriptions (channels of a plugin's namespace) are dropped: open
// channels and config are not private and keep delivering, also with
// auth.anonymous off.
func TestGraceOverDropsOnlyPrivateSubscriptions(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		Auth: fmt.Sprintf("token_secret = %q\n api_keys = [%q]\n expiry_grace = \"300ms\"", heraldtest.Secret, heraldtest.APIKey),
		HCL:  pluginBlock("echo", "examples/echo-plugin", "")(t),
	})
	lapsed := h.Dial(t, heraldtest.MintToken(t, "alice", 2*time.Second, nil))
	lapsed.Subscribe(t, "news", "config", "echo:alice")
	// alice's second connection, with a long token, watches echo:alice.
	watcher := h.Dial(t, h.Token(t, "alice"))
	watcher.Subscribe(t, "echo:alice")
	presence := func() int {
		var p struct{ Count int }
		require.NoError(t, json.Unmarshal(watcher.MustCall(t, "presence", map[string]any{"channel": "echo:alice"}), &p))
		return p.Count
	}
	require.Equal(t, 2, presence())

	require.Equal(t, "token_expired", lapsed.Notifications(t, 1)[0].Event)
	// The grace ends: lapsed leaves echo:alice, and is told so, with why;
	// by then the subscription is gone.
	n := lapsed.Notifications(t, 1)[0]
	require.Equal(t, "$server", n.Channel)
	require.Equal(t, "unsubscribed", n.Event)
	require.Equal(t, "server", n.ObjectType)
	require.JSONEq(t, `{"channels":[{"channel":"echo:alice","reason":"the token expired and no new one came within auth.expiry_grace"}]}`, string(n.Object))
	require.Equal(t, 1, presence())

	// Accepted first, the echo notification would reach lapsed before news
	// if lapsed still held echo:alice.
	status, body := h.Do(t, http.MethodPost, "/v1/plugins/echo/say", map[string]any{"text": "private", "user": "alice"}, heraldtest.APIKey, nil)
	require.Equal(t, 200, status, string(body))
	require.Equal(t, "echo:alice", watcher.Notifications(t, 1)[0].Channel)
	h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
	require.Equal(t, "news", lapsed.Notifications(t, 1)[0].Channel)

	// config is held still (unsubscribe is allowed after expiry and names
	// what the connection had).
	var un struct{ Unsubscribed []string }
	require.NoError(t, json.Unmarshal(lapsed.MustCall(t, "unsubscribe", map[string]any{"channels": []string{"news", "config", "echo:alice"}}), &un))
	require.Equal(t, []string{"news", "config"}, un.Unsubscribed)
	// The client's own unsubscribe has its answer: no $server unsubscribed.
	require.NoError(t, json.Unmarshal(lapsed.MustCall(t, "authenticate", map[string]any{"token": h.Token(t, "alice")}), new(any)))
	lapsed.Subscribe(t, "news")
	h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
	require.Equal(t, "news", lapsed.Notifications(t, 1)[0].Channel)
}

// A plugin that calls a method of a client that never answers learns that
// the client did not answer, before its own call, bounded by the same
// limits.call_timeout, times out: the caller is not told that the plugin
// failed.
func TestUnansweredClientCallBlamesTheClient(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		HCL: "limits {\n  call_timeout = \"2s\"\n}\n" + pluginBlock("echo", "examples/echo-plugin", "")(t),
	})
	alice := h.Dial(t, h.Token(t, "alice"))
	alice.MustCall(t, "hello", map[string]any{"methods": []string{"onNotificationReceived", "getLoc"}})
	e := alice.CallErr(t, "echo.ask", map[string]any{"method": "getLoc"})
	require.Equal(t, -32603, e.Code)
	require.Contains(t, e.Message, `the client did not answer "getLoc" in time`)
	require.NotContains(t, e.Message, `plugin "echo" did not answer`)
	call := <-alice.Calls // sent, never answered
	require.Equal(t, "getLoc", call.Method)
	alice.MustCall(t, "ping", nil)
}

// onNotificationReceived is a notification only Herald sends: a plugin's
// call of it is refused, and nothing reaches the client.
func TestPluginCannotCallOnNotificationReceived(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: pluginBlock("echo", "examples/echo-plugin", "")(t)})
	alice := h.Dial(t, h.Token(t, "alice"))
	e := alice.CallErr(t, "echo.ask", map[string]any{"method": "onNotificationReceived", "params": map[string]any{"notifications": []any{}}})
	require.Equal(t, -32601, e.Code)
	require.Contains(t, e.Message, "emit notifications instead")
	// A request sent to the client would have been read before the reply.
	select {
	case b := <-alice.Batches:
		t.Fatalf("the client received a call of onNotificationReceived: %+v", b)
	case m := <-alice.Calls:
		t.Fatalf("the client received a call: %+v", m)
	default:
	}
}

// Error messages give advice that can be followed: $server cannot be
// subscribed, so presence on it does not say to subscribe first.
func TestPresenceOnServerChannelSaysItHasNone(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	c := h.Dial(t, h.Token(t, "alice"))
	e := c.CallErr(t, "presence", map[string]any{"channel": "$server"})
	require.Equal(t, -32602, e.Code)
	require.Contains(t, e.Message, "$server has no presence")
	require.NotContains(t, e.Message, "subscribe to")
	e = c.CallErr(t, "hello", map[string]any{"methods": []any{1}})
	require.Equal(t, "invalid params: each entry of methods must be a string, not number", e.Message)
	e = c.CallErr(t, "subscribe", map[string]any{"channel": "r1", "since": map[string]any{"r1": map[string]any{"seq": -1, "epoch": "e"}}})
	require.Equal(t, "invalid params: since.r1.seq must be a non-negative integer, not number -1", e.Message)
}

// An anonymous connection that holds subscriptions cannot sign in: they
// were authorized for no user (docs/protocol.md, Connecting).
func TestAnonymousConnectionWithSubscriptionsCannotAuthenticate(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{Auth: fmt.Sprintf("anonymous = true\n token_secret = %q\n api_keys = [%q]", heraldtest.Secret, heraldtest.APIKey)})
	c := h.Dial(t, "")
	c.Subscribe(t, "public")
	for method, params := range map[string]map[string]any{
		"hello":        {"token": h.Token(t, "alice")},
		"authenticate": {"token": h.Token(t, "alice")},
		"subscribe":    {"channel": "other", "accessToken": h.Token(t, "alice")},
	} {
		e := c.CallErr(t, method, params)
		require.Equal(t, -32003, e.Code, method)
		require.Contains(t, e.Message, "authenticate before subscribing", method)
	}
	signedIn := h.Dial(t, "")
	signedIn.MustCall(t, "authenticate", map[string]any{"token": h.Token(t, "alice")})
	signedIn.Subscribe(t, "public")
}

// SIGTERM closes the clients once the publishes under way are answered,
// not once every HTTP request is: a backend's plugin call that waits on a
// client (which will not answer) does not hold the others' 1001, and a
// publishing WebSocket refuses what it reads after the drain began.
func TestSIGTERMDoesNotWaitForPluginCallsToCloseClients(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		HCL: "limits {\n  call_timeout = \"60s\"\n}\n" + pluginBlock("echo", "examples/echo-plugin", "")(t),
	})
	alice := h.Dial(t, h.Token(t, "alice"))
	sessionID := presentMethods(t, alice, "onNotificationReceived", "getLoc")
	alice.Subscribe(t, "echo:alice") // a plugin calls only connections on its channels
	asked := make(chan int, 1)
	go func() {
		status, body := h.Do(t, http.MethodPost, "/v1/plugins/echo/ask", map[string]any{"connection": sessionID, "method": "getLoc"}, heraldtest.APIKey, nil)
		t.Logf("echo.ask: %d %s", status, body)
		asked <- status
	}()
	select {
	case call := <-alice.Calls: // the plugin's call reached alice, who never answers it
		require.Equal(t, "getLoc", call.Method)
	case status := <-asked:
		t.Fatalf("echo.ask ended (%d) before its call reached the client", status)
	case <-time.After(heraldtest.Timeout):
		t.Fatal("echo.ask's call never reached the client")
	}

	h.Signal(t, syscall.SIGTERM)
	n := alice.Notifications(t, 1)[0]
	require.Equal(t, "shutdown", n.Event, "told within heraldtest's wait, long before the 60s call_timeout")
	require.Equal(t, 1001, alice.WaitClosed(t))
	require.NotEqual(t, http.StatusOK, <-asked, "the call ended with its client")
	require.NoError(t, h.Wait(t, 20*time.Second))
}

// Before authentication a batch is bounded by a tenth of
// limits.max_batch_calls: the refusal names that bound and the way out.
func TestPreAuthBatchLimitSaysWhatToFix(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: "limits {\n  max_batch_calls = 10\n}\n"})
	c := h.Dial(t, "")
	require.NoError(t, c.Send([]byte(`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`)))
	m := c.NextUnmatched(t)
	require.NotNil(t, m.Error)
	require.Equal(t, -32005, m.Error.Code)
	require.Contains(t, m.Error.Message, "before the connection authenticates a batch may hold at most 1 calls (limits.max_batch_calls / 10)")
}

// Calls to a plugin that does not exist are answered -32004 at once and
// take no in-flight slot: pipelined, none of them is -32005.
func TestCallsToAnUnknownPluginTakeNoInflightSlot(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: "limits {\n  max_inflight_calls = 1\n}\n"})
	c := h.Dial(t, h.Token(t, "alice"))
	var frame []byte
	frame = append(frame, '[')
	for i := 1; i <= 5; i++ {
		if i > 1 {
			frame = append(frame, ',')
		}
		frame = fmt.Appendf(frame, `{"jsonrpc":"2.0","id":%d,"method":"nosuch.method"}`, i)
	}
	frame = append(frame, ']')
	require.NoError(t, c.Send(frame))
	for range 5 {
		m := c.NextUnmatched(t)
		require.NotNil(t, m.Error, "%+v", m)
		require.Equal(t, -32004, m.Error.Code, "%s", m.Error.Message)
	}
	require.Equal(t, -32601, c.CallErr(t, "nodot", nil).Code, "a method without a dot is still -32601")
}
