package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/stretchr/testify/require"
)

// These tests run the real herald binary with the real timelines binary
// and talk to them with WebSocket clients and HTTP, as users do.

func TestMain(m *testing.M) { heraldtest.Main(m) }

type stack struct {
	*heraldtest.Stack
	t *testing.T
}

// startStack serves the timelines plugin with its state (Herald's state
// block) in dir, so that a herald started again on dir finds it; auth, if
// not empty, is added to the auth block.
func startStack(t *testing.T, dir, auth string) *stack {
	t.Helper()
	h := heraldtest.StartPlugin(t, heraldtest.PluginOptions{Name: "timelines", StateDir: filepath.Join(dir, "state"),
		Config: fmt.Sprintf("    data_dir = %q", dir),
		Auth:   fmt.Sprintf("token_secret = %q\n  api_keys = [%q]\n  %s", heraldtest.Secret, heraldtest.APIKey, auth)})
	return &stack{Stack: h, t: t}
}

// backend POSTs a timelines method with the API key.
func (s *stack) backend(method string, body any) (int, json.RawMessage) {
	s.t.Helper()
	return s.Backend(s.t, method, body)
}

func (s *stack) mustBackend(method string, body any) json.RawMessage {
	s.t.Helper()
	return s.MustBackend(s.t, method, body)
}

func (s *stack) emit(channel, payload string) {
	s.t.Helper()
	s.mustBackend("emit", map[string]any{"channel": channel, "payload": json.RawMessage(payload)})
}

// net is one entry of the networks claim.
type net struct {
	User        string   `json:"user"`
	Permissions []string `json:"permissions,omitempty"`
	AdminOf     []string `json:"admin_of,omitempty"`
}

// token mints a token for global user sub with a networks claim.
func token(t *testing.T, sub string, ttl time.Duration, networks map[string]net) string {
	t.Helper()
	var claims map[string]any
	if networks != nil {
		b, _ := json.Marshal(networks)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		claims = map[string]any{"networks": m}
	}
	return heraldtest.MintToken(t, sub, ttl, claims)
}

// subscribeSpeakap subscribes in the source's form: a space-separated list
// and accessToken, on a connection opened without a token.
func (s *stack) subscribeSpeakap(tok string, channels ...string) *heraldtest.Client {
	s.t.Helper()
	c := s.Dial(s.t, "")
	subs := c.SubscribeParams(s.t, map[string]any{"channel": strings.Join(channels, " "), "accessToken": tok})
	require.Len(s.t, subs, len(channels))
	return c
}

func one(t *testing.T, c *heraldtest.Client) heraldtest.Notification {
	t.Helper()
	return c.Notifications(t, 1)[0]
}

// alice is global user gu1; in network n1 she is u1, may see readers
// network-wide and administers group g1.
var aliceNetworks = map[string]net{"n1": {User: "u1", Permissions: []string{"view_readers"}, AdminOf: []string{"g1"}}}

// channelOf is, per kind, the channel alice subscribes to.
var channelOf = map[string]string{
	"network_timeline":        "network_timeline:n1",
	"user_timeline":           "user_timeline:u9:n1",
	"group_timeline":          "group_timeline:g1:n1",
	"message":                 "message:m1:n1",
	"message_readers":         "message_readers:m1:n1",
	"my_memberships":          "my_memberships:u1:n1",
	"group_memberships":       "group_memberships:g1:n1",
	"group_admin_memberships": "group_admin_memberships:g1:n1",
	"alerts":                  "alerts:gu1",
	"messages":                "messages:gu1",
	"news":                    "news:gu1",
}

func TestIntegrationEveryChannelKindWithEveryEvent(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	var all []string
	for _, k := range kinds {
		all = append(all, channelOf[k.name])
	}
	c := s.subscribeSpeakap(token(t, "gu1", time.Hour, aliceNetworks), append(all, "config")...)
	for _, k := range kinds {
		for _, p := range validPayloads[k.name] {
			s.emit(channelOf[k.name], p)
			n := one(t, c)
			var ev struct{ Event string }
			require.NoError(t, json.Unmarshal([]byte(p), &ev))
			require.Equal(t, channelOf[k.name], n.Channel)
			require.Equal(t, ev.Event, n.Event)
			require.Equal(t, k.name, n.ObjectType)
			require.Equal(t, p, string(n.Object), "the payload goes out verbatim")
			require.NotEmpty(t, n.ID)
			require.NotZero(t, n.Timestamp)
		}
	}
	c.NoNotification(t, 200*time.Millisecond)
}

func TestIntegrationPermissions(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	// bob is gu2; in n1 he is u2, with no permission and no group; he is
	// also in n3 as u7.
	bobNetworks := map[string]net{"n1": {User: "u2"}, "n3": {User: "u7"}}
	s.mustBackend("grant", map[string]any{"network": "n1", "user": "u2", "message": "m5", "permission": "view_readers"})
	s.mustBackend("grant", map[string]any{"network": "n1", "user": "u2", "group": "g5", "role": "admin"})

	for _, tc := range []struct {
		who      string
		networks map[string]net
		channel  string
		code     int // 0: allowed
	}{
		// networks: only those of the claim
		{"gu2", bobNetworks, "network_timeline:n1", 0},
		{"gu2", bobNetworks, "network_timeline:n3", 0},
		{"gu2", bobNetworks, "network_timeline:n2", -32003},
		{"gu2", bobNetworks, "user_timeline:u9:n1", 0},
		{"gu2", bobNetworks, "user_timeline:u9:n2", -32003},
		{"gu2", bobNetworks, "group_timeline:g1:n1", 0},
		{"gu2", bobNetworks, "group_timeline:g1:n2", -32003},
		{"gu2", bobNetworks, "message:m1:n1", 0},
		{"gu2", bobNetworks, "message:m1:n2", -32003},
		{"gu2", bobNetworks, "group_memberships:g1:n1", 0},
		{"gu2", bobNetworks, "group_memberships:g1:n2", -32003},
		// own user, per-network EID
		{"gu2", bobNetworks, "my_memberships:u2:n1", 0},
		{"gu2", bobNetworks, "my_memberships:u7:n3", 0},
		{"gu2", bobNetworks, "my_memberships:u7:n1", -32003},
		{"gu2", bobNetworks, "my_memberships:u1:n1", -32003},
		{"gu2", bobNetworks, "my_memberships:gu2:n1", -32003},
		{"gu2", bobNetworks, "my_memberships:u2:n2", -32003},
		// own user, global EID
		{"gu2", bobNetworks, "alerts:gu2", 0},
		{"gu2", bobNetworks, "alerts:gu1", -32003},
		{"gu2", bobNetworks, "alerts:u2", -32003},
		{"gu2", bobNetworks, "messages:gu2", 0},
		{"gu2", bobNetworks, "messages:gu1", -32003},
		{"gu2", bobNetworks, "news:gu2", 0},
		{"gu2", bobNetworks, "news:gu1", -32003},
		{"gu2", nil, "alerts:gu2", 0},
		{"gu2", nil, "network_timeline:n1", -32003},
		// view_readers: network-wide in the token, or granted per message
		{"gu1", aliceNetworks, "message_readers:m1:n1", 0},
		{"gu1", aliceNetworks, "message_readers:m9:n1", 0},
		{"gu2", bobNetworks, "message_readers:m5:n1", 0},
		{"gu2", bobNetworks, "message_readers:m1:n1", -32003},
		{"gu2", bobNetworks, "message_readers:m5:n3", -32003},
		{"gu2", bobNetworks, "message_readers:m5:n2", -32003},
		// group admin: admin_of in the token, or the role granted
		{"gu1", aliceNetworks, "group_admin_memberships:g1:n1", 0},
		{"gu1", aliceNetworks, "group_admin_memberships:g5:n1", -32003},
		{"gu2", bobNetworks, "group_admin_memberships:g5:n1", 0},
		{"gu2", bobNetworks, "group_admin_memberships:g1:n1", -32003},
		{"gu2", bobNetworks, "group_admin_memberships:g5:n3", -32003},
		// malformed channels
		{"gu2", bobNetworks, "message:m1", -32602},
		{"gu2", bobNetworks, "network_timeline:n1:x", -32602},
		{"gu2", bobNetworks, "alerts:gu2:n1", -32602},
	} {
		c := s.Dial(t, "")
		res, rerr, err := c.Call("subscribe", map[string]any{"channel": tc.channel, "accessToken": token(t, tc.who, time.Hour, tc.networks)})
		require.NoError(t, err)
		if tc.code == 0 {
			require.Nil(t, rerr, "%s %s: %v", tc.who, tc.channel, rerr)
			require.Contains(t, string(res), tc.channel)
		} else {
			require.NotNil(t, rerr, "%s %s: allowed, want %d", tc.who, tc.channel, tc.code)
			var data struct {
				Channels []struct {
					Channel string
					Code    int
					Reason  string
				}
			}
			require.NoError(t, json.Unmarshal(rerr.Data, &data))
			require.Len(t, data.Channels, 1)
			require.Equal(t, tc.channel, data.Channels[0].Channel)
			require.Equal(t, tc.code, data.Channels[0].Code, "%s %s: %s", tc.who, tc.channel, data.Channels[0].Reason)
			require.NotEmpty(t, data.Channels[0].Reason)
		}
		c.Close()
	}

	// A malformed networks claim refuses, saying why.
	c := s.Dial(t, "")
	bad := heraldtest.MintToken(t, "gu3", time.Hour, map[string]any{"networks": []string{"n1"}})
	e := c.CallErr(t, "subscribe", map[string]any{"channel": "network_timeline:n1", "accessToken": bad})
	require.Equal(t, -32003, e.Code)
	require.Contains(t, e.Message, "networks")

	// All or nothing: one refused channel, nothing subscribed.
	c = s.dialAs("gu2", bobNetworks)
	e = c.CallErr(t, "subscribe", map[string]any{"channel": "network_timeline:n1 network_timeline:n2"})
	require.Equal(t, -32003, e.Code)
	s.emit("network_timeline:n1", validPayloads["network_timeline"][0])
	c.NoNotification(t, 200*time.Millisecond)

	// emit, grant and revoke are the backend's.
	for _, m := range []string{"emit", "grant", "revoke"} {
		require.Equal(t, -32003, c.CallErr(t, "timelines."+m, map[string]any{}).Code, m)
	}
	st, _ := s.Do(t, http.MethodPost, "/v1/plugins/timelines/emit", map[string]any{"channel": "news:gu2", "payload": map[string]any{}}, "", nil)
	require.Equal(t, http.StatusUnauthorized, st)
}

func (s *stack) dialAs(sub string, networks map[string]net) *heraldtest.Client {
	s.t.Helper()
	return s.Dial(s.t, token(s.t, sub, time.Hour, networks))
}

// errorBody is the JSON error of a refused backend call.
type errorBody struct {
	Error struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

func TestIntegrationRefusedEmitsAre400AndDeliverNothing(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	c := s.subscribeSpeakap(token(t, "gu1", time.Hour, aliceNetworks),
		"network_timeline:n1", "group_timeline:g1:n1", "message:m1:n1", "alerts:gu1", "my_memberships:u1:n1")
	for _, tc := range []struct {
		name, body, channel, field string
	}{
		{"unknown event", `{"channel":"network_timeline:n1","payload":{"event":"posted","message":"m1","author":"u1"}}`, "network_timeline:n1", "payload.event"},
		{"event of another kind", `{"channel":"group_timeline:g1:n1","payload":{"event":"like","liker":"u3","message":"m1","author":"u1"}}`, "group_timeline:g1:n1", "payload.event"},
		{"missing key", `{"channel":"network_timeline:n1","payload":{"event":"create","author":"u1"}}`, "network_timeline:n1", "payload.message"},
		{"missing counter", `{"channel":"alerts:gu1","payload":{"event":"read","network":"n1","category":"admin"}}`, "alerts:gu1", "payload.numAdminAlerts"},
		{"key of no table", `{"channel":"message:m1:n1","payload":{"event":"create","message":"m1","author":"u1","liker":"u2"}}`, "message:m1:n1", "payload.liker"},
		{"key not on that event", `{"channel":"network_timeline:n1","payload":{"event":"create","liker":"u3","message":"m1","author":"u1"}}`, "network_timeline:n1", "payload.liker"},
		{"comment key without parent", `{"channel":"message:m1:n1","payload":{"event":"delete","message":"m1","author":"u1","deletedBy":"admin"}}`, "message:m1:n1", "payload.deletedBy"},
		{"group unless rev is group", `{"channel":"my_memberships:u1:n1","payload":{"event":"create","membership":"ms1","rev":"network","group":"g1"}}`, "my_memberships:u1:n1", "payload.group"},
		{"wrong type", `{"channel":"network_timeline:n1","payload":{"event":"create","message":"c1","author":"u1","parent":"m1","firstCommentByAuthor":"yes"}}`, "network_timeline:n1", "payload.firstCommentByAuthor"},
		{"wrong integer", `{"channel":"alerts:gu1","payload":{"event":"read","network":"n1","category":"user","numUnreadAlerts":2.5}}`, "alerts:gu1", "payload.numUnreadAlerts"},
		{"bad EID", `{"channel":"network_timeline:n1","payload":{"event":"create","message":"m 1","author":"u1"}}`, "network_timeline:n1", "payload.message"},
		{"payload not an object", `{"channel":"network_timeline:n1","payload":"create"}`, "network_timeline:n1", "payload"},
		{"bad channel", `{"channel":"timeline:n1","payload":{"event":"create","message":"m1","author":"u1"}}`, "timeline:n1", "channel"},
		// Several channels: the second one's table refuses liker, so the
		// first, valid, is not delivered either.
		{"one bad channel of several", `{"channels":["network_timeline:n1","group_timeline:g1:n1"],"payload":{"event":"like","liker":"u3","message":"m1","author":"u1"}}`, "group_timeline:g1:n1", "payload.event"},
		{"duplicate channel", `{"channels":["network_timeline:n1","network_timeline:n1"],"payload":{"event":"create","message":"m1","author":"u1"}}`, "network_timeline:n1", "channels[1]"},
	} {
		st, body := s.backend("emit", json.RawMessage(tc.body))
		require.Equal(t, http.StatusBadRequest, st, "%s: %s", tc.name, body)
		var e errorBody
		require.NoError(t, json.Unmarshal(body, &e), "%s", body)
		require.Equal(t, -32602, e.Error.Code)
		require.Contains(t, e.Error.Message, tc.field, tc.name)
		require.Contains(t, e.Error.Message, tc.channel, tc.name)
		require.JSONEq(t, fmt.Sprintf(`{"channel":%q,"field":%q}`, tc.channel, tc.field), string(e.Error.Data), tc.name)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"payload":{"event":"create"}}`, "channel"},
		{`{"channel":"network_timeline:n1"}`, "payload"},
		{`{"channel":"network_timeline:n1","channels":["news:gu1"],"payload":{}}`, "channels"},
		{`{"channels":[],"payload":{}}`, "channels"},
		{`{"channel":"network_timeline:n1","payload":{},"extra":1}`, "extra"},
	} {
		st, body := s.backend("emit", json.RawMessage(tc.body))
		require.Equal(t, http.StatusBadRequest, st, "%s: %s", tc.body, body)
		var e errorBody
		require.NoError(t, json.Unmarshal(body, &e))
		require.JSONEq(t, fmt.Sprintf(`{"field":%q}`, tc.field), string(e.Error.Data), tc.body)
	}
	c.NoNotification(t, 300*time.Millisecond)

	for _, tc := range []struct{ body, field string }{
		{`{"network":"n1","user":"u1","message":"m1"}`, "permission"},
		{`{"network":"n1","user":"u1","message":"m1","permission":"edit"}`, "permission"},
		{`{"network":"n1","user":"u1","group":"g1","role":"owner"}`, "role"},
		{`{"network":"n1","user":"u1","permission":"view_readers"}`, "message"},
		{`{"network":"n1","user":"u1","role":"admin"}`, "group"},
		{`{"network":"n1","user":"u1","role":"admin","group":"g1","message":"m1"}`, "message"},
		{`{"user":"u1","role":"admin","group":"g1"}`, "network"},
		{`{"network":"n1","user":"a:b","role":"admin","group":"g1"}`, "user"},
	} {
		for _, m := range []string{"grant", "revoke"} {
			st, body := s.backend(m, json.RawMessage(tc.body))
			require.Equal(t, http.StatusBadRequest, st, "%s %s: %s", m, tc.body, body)
			var e errorBody
			require.NoError(t, json.Unmarshal(body, &e))
			require.JSONEq(t, fmt.Sprintf(`{"field":%q}`, tc.field), string(e.Error.Data), tc.body)
		}
	}
}

// A comment concerns its message, its group's timeline and the network
// timeline: one call, one publish, one batch for a client on all three.
func TestIntegrationOneEmitToSeveralChannels(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	chans := []string{"message:m1:n1", "group_timeline:g1:n1", "network_timeline:n1"}
	c := s.subscribeSpeakap(token(t, "gu1", time.Hour, aliceNetworks), chans...)
	payload := `{"event":"create","message":"c7","author":"u2","parent":"m1","firstCommentByAuthor":true}`
	var res struct {
		Results []struct {
			Channel string `json:"channel"`
			Seq     uint64 `json:"seq"`
			ID      string `json:"id"`
		} `json:"results"`
	}
	require.NoError(t, json.Unmarshal(s.mustBackend("emit", map[string]any{"channels": chans, "payload": json.RawMessage(payload)}), &res))
	require.Len(t, res.Results, 3)
	var batch []heraldtest.Notification
	select {
	case batch = <-c.Batches:
	case <-time.After(heraldtest.Timeout):
		t.Fatal("no batch")
	}
	require.Len(t, batch, 3, "one emit, one batch")
	for i, n := range batch {
		require.Equal(t, chans[i], n.Channel)
		require.Equal(t, res.Results[i].Channel, n.Channel)
		require.Equal(t, res.Results[i].ID, n.ID)
		require.Equal(t, "create", n.Event)
		require.Equal(t, strings.Split(chans[i], ":")[0], n.ObjectType)
		require.Equal(t, payload, string(n.Object))
	}

	// The form a backend does not use may come as null (a serializer's
	// empty field): it counts as absent.
	for _, body := range []string{
		`{"channel":"message:m1:n1","channels":null,"payload":` + payload + `}`,
		`{"channel":null,"channels":["message:m1:n1"],"payload":` + payload + `}`,
	} {
		s.mustBackend("emit", json.RawMessage(body))
		n := one(t, c)
		require.Equal(t, "message:m1:n1", n.Channel, body)
		require.Equal(t, payload, string(n.Object), body)
	}
}

// The source checks the token at subscribe time only: timelines
// subscriptions outlive it, as the connection's open channels do, while its
// other private subscriptions (another plugin's channel, echo's here) end
// with the expiry grace (CONTRACT.md section 3).
func TestIntegrationSubscriptionsSurviveTokenExpiry(t *testing.T) {
	dir := t.TempDir()
	echo := heraldtest.Binary(t, "examples/echo-plugin")
	h := heraldtest.StartPlugin(t, heraldtest.PluginOptions{Name: "timelines", StateDir: filepath.Join(dir, "state"),
		Config: fmt.Sprintf("    data_dir = %q", dir),
		Auth:   fmt.Sprintf("token_secret = %q\n  api_keys = [%q]\n  expiry_grace = \"200ms\"", heraldtest.Secret, heraldtest.APIKey),
		HCL:    fmt.Sprintf("plugin \"echo\" {\n  command = %q\n}\n", echo)})
	s := &stack{Stack: h, t: t}
	watcher := s.dialAs("gu1", nil) // the same user, with a token that lasts
	watcher.Subscribe(t, "echo:gu1")
	c := s.subscribeSpeakap(token(t, "gu1", 2*time.Second, aliceNetworks), "network_timeline:n1", "alerts:gu1", "lobby", "echo:gu1")
	n := one(t, c)
	require.Equal(t, "$server", n.Channel)
	require.Equal(t, "token_expired", n.Event)
	// The grace is over when echo:gu1 has lost c.
	deadline := time.Now().Add(heraldtest.Timeout)
	for {
		var p struct{ Count int }
		require.NoError(t, json.Unmarshal(watcher.MustCall(t, "presence", map[string]any{"channel": "echo:gu1"}), &p))
		if p.Count == 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the expiry grace never dropped the private channel")
		time.Sleep(50 * time.Millisecond) // under limits.calls_per_second
	}
	// c is told of echo:gu1 alone: the timelines channels are kept.
	n = one(t, c)
	require.Equal(t, "unsubscribed", n.Event)
	require.JSONEq(t, `{"channels":[{"channel":"echo:gu1","reason":"the token expired and no new one came within auth.expiry_grace"}]}`, string(n.Object))

	// Order across channels is kept: had echo:gu1 been delivered, it would come first.
	watcher.MustCall(t, "echo.say", map[string]any{"text": "after the grace"})
	require.Equal(t, "echo:gu1", one(t, watcher).Channel)
	s.Publish(t, heraldtest.N("lobby", "e", "t", `{}`))
	require.Equal(t, "lobby", one(t, c).Channel, "the open channel is kept")
	s.emit("network_timeline:n1", validPayloads["network_timeline"][1])
	require.Equal(t, "network_timeline:n1", one(t, c).Channel, "the timeline is kept")
	s.emit("alerts:gu1", validPayloads["alerts"][0])
	require.Equal(t, "alerts:gu1", one(t, c).Channel)

	// New subscriptions need a token again; unsubscribing does not.
	require.Equal(t, -32001, c.CallErr(t, "subscribe", map[string]any{"channel": "news:gu1"}).Code)
	require.JSONEq(t, `{"unsubscribed":["network_timeline:n1","alerts:gu1"]}`,
		string(c.MustCall(t, "unsubscribe", map[string]any{"channel": "network_timeline:n1 alerts:gu1"})))
	s.emit("network_timeline:n1", validPayloads["network_timeline"][1])
	c.NoNotification(t, 300*time.Millisecond)
	c.SubscribeParams(t, map[string]any{"channel": "news:gu1", "accessToken": token(t, "gu1", time.Hour, aliceNetworks)})
	s.emit("news:gu1", validPayloads["news"][0])
	require.Equal(t, "news:gu1", one(t, c).Channel)
}

// The source's footnote: a client that reconnects has lost what happened
// meanwhile. Herald's clients resume with since.
func TestIntegrationResumeAfterDisconnect(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	tok := token(t, "gu1", time.Hour, aliceNetworks)
	c := s.subscribeSpeakap(tok, "network_timeline:n1")
	s.emit("network_timeline:n1", validPayloads["network_timeline"][0])
	last := one(t, c)
	subs := c.SubscribeParams(t, map[string]any{"channel": "network_timeline:n1"})
	epoch := subs[0].Epoch
	watcher := s.subscribeSpeakap(token(t, "gu2", time.Hour, map[string]net{"n1": {User: "u2"}}), "network_timeline:n1")
	c.Close()
	// A disconnected client is unsubscribed from everything.
	deadline := time.Now().Add(heraldtest.Timeout)
	for {
		var p struct{ Count int }
		require.NoError(t, json.Unmarshal(watcher.MustCall(t, "presence", map[string]any{"channel": "network_timeline:n1"}), &p))
		if p.Count == 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the closed connection is still subscribed")
		time.Sleep(50 * time.Millisecond) // under limits.calls_per_second
	}

	// While it is away, two changes.
	s.emit("network_timeline:n1", validPayloads["network_timeline"][1])
	s.emit("network_timeline:n1", validPayloads["network_timeline"][5])

	c2 := s.Dial(t, "")
	subs = c2.SubscribeParams(t, map[string]any{"channel": "network_timeline:n1", "accessToken": tok,
		"since": map[string]any{"network_timeline:n1": map[string]any{"seq": last.Seq, "epoch": epoch}}})
	require.NotNil(t, subs[0].Recovered)
	require.True(t, *subs[0].Recovered)
	missed := c2.Notifications(t, 2)
	require.Equal(t, last.Seq+1, missed[0].Seq)
	require.Equal(t, "create", missed[0].Event)
	require.Equal(t, last.Seq+2, missed[1].Seq)
	require.Equal(t, "like", missed[1].Event)
}

func TestIntegrationGrantsSurviveKill9AndRestartAndRevokeDrops(t *testing.T) {
	dir := t.TempDir()
	s := startStack(t, dir, "")
	bob := map[string]net{"n1": {User: "u2"}}
	var r struct{ Granted bool }
	require.NoError(t, json.Unmarshal(s.mustBackend("grant", map[string]any{"network": "n1", "user": "u2", "message": "m5", "permission": "view_readers"}), &r))
	require.True(t, r.Granted)
	require.NoError(t, json.Unmarshal(s.mustBackend("grant", map[string]any{"network": "n1", "user": "u2", "message": "m5", "permission": "view_readers"}), &r))
	require.False(t, r.Granted, "granted once")
	s.mustBackend("grant", map[string]any{"network": "n1", "user": "u2", "group": "g5", "role": "admin"})
	s.mustBackend("grant", map[string]any{"network": "n1", "user": "u2", "group": "g6", "role": "admin"})

	s.kill9()
	c := s.subscribeSpeakap(token(t, "gu2", time.Hour, bob), "message_readers:m5:n1", "group_admin_memberships:g5:n1", "group_admin_memberships:g6:n1")
	// Alice reads m5's readers through her token's permission: a revoke of
	// bob's grant leaves her alone.
	alice := s.subscribeSpeakap(token(t, "gu1", time.Hour, map[string]net{"n1": {User: "u1", Permissions: []string{"view_readers"}}}), "message_readers:m5:n1")

	// The plugin learns of the subscriptions from the host: a revoke drops
	// them. The host's events reach the plugin apart from the revoke call:
	// a subscription the plugin learns of after the revoke is dropped then,
	// when its event is checked, and not counted in the answer.
	var rv struct {
		Revoked      bool
		Unsubscribed int
	}
	dropped := func(c *heraldtest.Client, channel string) func() bool {
		return func() bool {
			_, e, err := c.Call("presence", map[string]any{"channel": channel})
			return err == nil && e != nil && e.Code == -32003 // no longer subscribed
		}
	}
	require.NoError(t, json.Unmarshal(s.mustBackend("revoke", map[string]any{"network": "n1", "user": "u2", "group": "g6", "role": "admin"}), &rv))
	require.True(t, rv.Revoked)
	require.LessOrEqual(t, rv.Unsubscribed, 1)
	require.Eventually(t, dropped(c, "group_admin_memberships:g6:n1"), heraldtest.Timeout, 10*time.Millisecond)
	requireUnsubscribed(t, c, "group_admin_memberships:g6:n1")
	s.emit("group_admin_memberships:g6:n1", validPayloads["group_admin_memberships"][0])
	s.emit("group_admin_memberships:g5:n1", validPayloads["group_admin_memberships"][0])
	require.Equal(t, "group_admin_memberships:g5:n1", one(t, c).Channel, "g6 dropped, g5 kept")

	// And after a plugin crash the host's replay tells it again.
	s.kill9()
	require.NoError(t, json.Unmarshal(s.mustBackend("revoke", map[string]any{"network": "n1", "user": "u2", "message": "m5", "permission": "view_readers"}), &rv))
	require.True(t, rv.Revoked)
	require.LessOrEqual(t, rv.Unsubscribed, 1, "bob's only: alice holds it by her token")
	require.Eventually(t, dropped(c, "message_readers:m5:n1"), heraldtest.Timeout, 10*time.Millisecond)
	requireUnsubscribed(t, c, "message_readers:m5:n1")
	s.emit("message_readers:m5:n1", validPayloads["message_readers"][0])
	require.Equal(t, "message_readers:m5:n1", one(t, alice).Channel)
	c.NoNotification(t, 300*time.Millisecond)
	s.Stop(t)

	// A restarted herald: g5 still granted, m5 and g6 revoked.
	s2 := startStack(t, dir, "")
	s2.subscribeSpeakap(token(t, "gu2", time.Hour, bob), "group_admin_memberships:g5:n1")
	for _, ch := range []string{"message_readers:m5:n1", "group_admin_memberships:g6:n1"} {
		e := s2.Dial(t, "").CallErr(t, "subscribe", map[string]any{"channel": ch, "accessToken": token(t, "gu2", time.Hour, bob)})
		require.Equal(t, -32003, e.Code, ch)
	}
}

// kill9 kills the plugin with SIGKILL and waits for herald to restart it.
// requireUnsubscribed takes c's next notification: the $server
// unsubscribed that timelines' revoke of channel makes herald send.
func requireUnsubscribed(t *testing.T, c *heraldtest.Client, channel string) {
	t.Helper()
	n := one(t, c)
	require.Equal(t, "$server", n.Channel)
	require.Equal(t, "unsubscribed", n.Event)
	require.JSONEq(t, fmt.Sprintf(`{"channels":[{"channel":%q,"reason":"ended by plugin timelines"}]}`, channel), string(n.Object))
}

func (s *stack) kill9() { s.t.Helper(); s.Kill9(s.t) }
