package main_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// A third-party plugin is confined: it emits only to its own channels and
// to its block's emit_channels (never to another namespace or to the core's
// config channel, where it could fake servers_busy), and it does not see
// herald's secrets in its environment.
func TestPluginConfinementOnTheBinary(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		HCL: pluginBlock("tester", "internal/testplugins/tester", `  emit_channels = ["news"]`)(t),
		Env: []string{"HERALD_TOKEN_SECRET=must-not-leak", "HERALD_API_KEY=must-not-leak-either"},
	})
	alice := h.Dial(t, h.Token(t, "alice"))
	alice.Subscribe(t, "config", "news", "tester:ok")
	bob := h.Dial(t, h.Token(t, "bob"))

	for _, ch := range []string{"config", "chat:user:42"} {
		e := bob.CallErr(t, "tester.emit", map[string]any{"channels": []string{"tester:ok", ch}})
		require.Equal(t, -32003, e.Code, ch)
		require.Contains(t, e.Message, ch)
		require.Contains(t, e.Message, "emit_channels")
	}
	bob.MustCall(t, "tester.emit", map[string]any{"channels": []string{"news", "tester:ok"}})
	got := alice.Notifications(t, 2)
	require.Equal(t, "news", got[0].Channel, "refused batches published nothing: %+v", got)
	require.Equal(t, "tester:ok", got[1].Channel)
	alice.NoNotification(t, 200*time.Millisecond)

	status, body := h.Do(t, http.MethodGet, "/metrics", nil, "", nil)
	require.Equal(t, 200, status)
	require.Contains(t, string(body), `herald_plugin_emits_refused_total{plugin="tester"} 4`)
	require.Equal(t, 1, strings.Count(h.Logs(), `channel=config`), "logged once per prefix:\n%s", h.Logs())

	var env []string
	require.NoError(t, json.Unmarshal(bob.MustCall(t, "tester.env", map[string]any{}), &env))
	for _, kv := range env {
		require.NotContains(t, kv, "must-not-leak", "herald's secrets reach the plugin: %v", env)
	}
}

// With auth.open_channels = false no client can subscribe to an open
// channel, so a plugin's emit to one it lists in emit_channels is refused
// naming the setting, as a backend's publish is; a SIGHUP that turns the
// setting on lets it through at once.
func TestPluginEmitToOpenChannelFollowsOpenChannels(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		Auth: fmt.Sprintf("token_secret = %q\n  api_keys = [%q]\n  open_channels = false", heraldtest.Secret, heraldtest.APIKey),
		HCL:  pluginBlock("tester", "internal/testplugins/tester", `  emit_channels = ["news"]`)(t),
	})
	emit := func() (int, string) {
		status, body := h.Do(t, http.MethodPost, "/v1/plugins/tester/emit", map[string]any{"channels": []string{"tester:ok", "news"}}, heraldtest.APIKey, nil)
		return status, string(body)
	}
	status, body := emit()
	require.NotEqual(t, http.StatusOK, status, body)
	require.Contains(t, body, "-32003")
	require.Contains(t, body, `\"news\"`)
	require.Contains(t, body, "auth.open_channels = false")

	cfg, err := os.ReadFile(h.ConfigPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(h.ConfigPath, []byte(strings.Replace(string(cfg), "open_channels = false", "open_channels = true", 1)), 0o600))
	h.Signal(t, syscall.SIGHUP)
	h.WaitLog(t, "reload: applied", heraldtest.Timeout)
	status, body = emit()
	require.Equal(t, http.StatusOK, status, body)
}

type testerEvent struct {
	Kind    string
	ConnID  string
	UserID  string
	Channel string
	Replay  bool
}

func testerEvents(t *testing.T, c *heraldtest.Client) []testerEvent {
	t.Helper()
	var evs []testerEvent
	require.NoError(t, json.Unmarshal(c.MustCall(t, "tester.events", map[string]any{}), &evs))
	return evs
}

// After a token expired, the unsubscribed event (its private subscriptions
// are dropped at the end of the grace) and the disconnected event still
// name the user: the plugin must know whose subscription ended.
func TestLifecycleEventsAfterTokenExpiryNameTheUser(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		Auth: fmt.Sprintf("token_secret = %q\n api_keys = [%q]\n expiry_grace = \"200ms\"", heraldtest.Secret, heraldtest.APIKey),
		HCL:  pluginBlock("tester", "internal/testplugins/tester", "")(t),
	})
	alice := h.Dial(t, heraldtest.MintToken(t, "alice", 1500*time.Millisecond, nil))
	alice.Subscribe(t, "tester:ok")
	bob := h.Dial(t, h.Token(t, "bob"))

	find := func(kind string) (testerEvent, bool) {
		for _, ev := range testerEvents(t, bob) {
			if ev.Kind == kind && ev.Channel == "tester:ok" || ev.Kind == kind && kind == "disconnected" {
				return ev, true
			}
		}
		return testerEvent{}, false
	}
	var ev testerEvent
	require.Eventually(t, func() (ok bool) { ev, ok = find("unsubscribed"); return ok }, heraldtest.Timeout, 20*time.Millisecond)
	require.Equal(t, "alice", ev.UserID, "unsubscribed after expiry: %+v", ev)

	alice.Close()
	require.Eventually(t, func() (ok bool) { ev, ok = find("disconnected"); return ok }, heraldtest.Timeout, 20*time.Millisecond)
	require.Equal(t, "alice", ev.UserID, "disconnected after expiry: %+v", ev)
}

// A plugin whose event hook is stuck for a while still learns that a user
// left: the host retries the delivery (limits.call_timeout bounds each
// attempt) instead of dropping it, and the plugin's view converges.
func TestStuckEventHookConvergesOnTheBinary(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		HCL: "limits {\n  call_timeout = \"1s\"\n}\n" + pluginBlock("tester", "internal/testplugins/tester", "")(t),
	})
	alice := h.Dial(t, h.Token(t, "alice"))
	alice.Subscribe(t, "tester:ok")
	bob := h.Dial(t, h.Token(t, "bob"))
	online := func() []string {
		var users []string
		require.NoError(t, json.Unmarshal(bob.MustCall(t, "tester.online", map[string]any{}), &users))
		return users
	}
	require.Eventually(t, func() bool { return len(online()) == 2 }, heraldtest.Timeout, 20*time.Millisecond)

	bob.MustCall(t, "tester.stallEvents", map[string]any{"count": 1, "ms": 60000})
	alice.Close()
	require.Eventually(t, func() bool {
		on := online()
		return len(on) == 1 && on[0] == "bob"
	}, heraldtest.Timeout, 50*time.Millisecond, "alice must not stay online: %v", online())
}

// Presence and client calls are confined to the plugin's own channels and
// the connections on them; a plugin without an authorizer keeps its channels
// closed (and says so at start) unless it allows every subscription.
func TestPluginHostCallsAndDefaultAuthorizationOnTheBinary(t *testing.T) {
	closed := pluginBlock("closed", "internal/testplugins/tester",
		`  env = { TESTER_NO_AUTHORIZER = "1", TESTER_PREFIX = "closed", TESTER_ROUTE = "/closed/{id}" }`)(t)
	open := pluginBlock("open", "internal/testplugins/tester",
		`  env = { TESTER_NO_AUTHORIZER = "1", TESTER_ALLOW_ALL = "1", TESTER_PREFIX = "open", TESTER_ROUTE = "/open/{id}" }`)(t)
	h := heraldtest.Start(t, heraldtest.Options{HCL: pluginBlock("tester", "internal/testplugins/tester", "")(t) + closed + open})
	h.WaitLog(t, "plugin implements no authorizer", heraldtest.Timeout)

	alice := h.Dial(t, h.Token(t, "alice"))
	sessionID := presentMethods(t, alice, "onNotificationReceived", "ask")
	alice.Subscribe(t, "news")
	bob := h.Dial(t, h.Token(t, "bob"))

	// alice is on no tester channel yet: the tester may not call her.
	e := bob.CallErr(t, "tester.callClient", map[string]any{"conn": sessionID, "method": "ask"})
	require.Equal(t, -32003, e.Code, "%+v", e)
	answer := func() {
		m := <-alice.Calls
		reply, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": "yes"})
		_ = alice.Send(reply)
	}
	// While alice herself calls the tester, it may call her back.
	go answer()
	require.JSONEq(t, `"yes"`, string(alice.MustCall(t, "tester.callClient", map[string]any{"conn": sessionID, "method": "ask"})))
	// Once she is on one of its channels, anyone's call may reach her.
	alice.Subscribe(t, "tester:ok")
	go answer()
	require.JSONEq(t, `"yes"`, string(bob.MustCall(t, "tester.callClient", map[string]any{"conn": sessionID, "method": "ask"})))

	require.Equal(t, -32003, bob.CallErr(t, "tester.presence", map[string]any{"channel": "news"}).Code)
	require.Equal(t, -32003, bob.CallErr(t, "tester.presence", map[string]any{"channel": "open:x"}).Code)
	require.JSONEq(t, `{"Count":1,"Users":["alice"]}`, string(bob.MustCall(t, "tester.presence", map[string]any{"channel": "tester:ok"})))

	e = bob.CallErr(t, "subscribe", map[string]any{"channels": []string{"closed:x"}})
	require.Equal(t, -32003, e.Code)
	require.Contains(t, string(e.Data), "no authorizer")
	bob.Subscribe(t, "open:anything")
}

// A plugin's answer is placed into the client's frame and the backend's
// body: one that is not exactly one JSON value could forge a notification
// on any channel, and error data that is not JSON broke the HTTP body. The
// client gets -32603 naming the plugin, and no notification; the HTTP
// caller a JSON error body, with bad data dropped.
func TestForgedPluginAnswersNeverReachTheClient(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		HCL: pluginBlock("tester", "internal/testplugins/tester", "")(t),
	})
	bob := h.Dial(t, h.Token(t, "bob"))
	bob.Subscribe(t, "news")
	forged := `null,"id":null,"method":"onNotificationReceived","params":{"notifications":[{"id":"x","channel":"news","seq":99,"timestamp":1,"event":"e","object_type":"o","object":{"forged":true}}]}`
	e := bob.CallErr(t, "tester.raw", map[string]any{"b64": base64.StdEncoding.EncodeToString([]byte(forged))})
	require.Equal(t, -32603, e.Code)
	require.Contains(t, e.Message, `plugin "tester"`)
	require.Contains(t, e.Message, "not one valid JSON value")
	bob.NoNotification(t, 200*time.Millisecond)

	fail := map[string]any{"code": -32003, "message": "no", "data_b64": base64.StdEncoding.EncodeToString([]byte(`{oops`))}
	e = bob.CallErr(t, "tester.fail", fail)
	require.Equal(t, -32003, e.Code)
	require.Contains(t, e.Message, "dropped")
	require.Empty(t, e.Data)

	status, body := h.Do(t, http.MethodPost, "/v1/plugins/tester/fail", fail, heraldtest.APIKey, nil)
	require.Equal(t, http.StatusForbidden, status)
	var reply struct{ Error heraldtest.RPCError }
	require.NoError(t, json.Unmarshal(body, &reply), "a JSON body: %q", body)
	require.Equal(t, -32003, reply.Error.Code)
	require.Contains(t, reply.Error.Message, "dropped")
}
