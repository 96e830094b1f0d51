package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/natstest"
	"github.com/stretchr/testify/require"
)

// These tests run the real herald binary with the real chat binary and
// talk to them with WebSocket clients and HTTP, as users do.

func TestMain(m *testing.M) { heraldtest.Main(m) }

type stack struct {
	*heraldtest.Stack
	t   *testing.T
	dir string
}

// startStack serves the chat plugin with its State under dir.
func startStack(t *testing.T, dir, window string) *stack {
	t.Helper()
	return startStackWith(t, dir, window, "")
}

// startStackWith appends extra to the config (blocks such as delivery {}).
func startStackWith(t *testing.T, dir, window, extra string) *stack {
	t.Helper()
	// Herald keeps the plugin's State under dir, which a restart test
	// reuses. The shortest liveness_ttl: a killed plugin's users who left
	// are announced offline soon after its restart.
	h := heraldtest.StartPlugin(t, heraldtest.PluginOptions{Name: "chat", StateDir: dir, HCL: extra,
		Config: fmt.Sprintf("    entering_window = %q\n    liveness_ttl = \"3s\"", window)})
	return &stack{Stack: h, t: t, dir: dir}
}

// backend POSTs a chat method with the API key.
func (s *stack) backend(method string, body any) (int, json.RawMessage) {
	s.t.Helper()
	return s.Backend(s.t, method, body)
}

func (s *stack) mustBackend(method string, body any) json.RawMessage {
	s.t.Helper()
	return s.MustBackend(s.t, method, body)
}

func (s *stack) member(group, user any) {
	s.t.Helper()
	s.mustBackend("addMember", map[string]any{"group_id": group, "user_id": user})
}

// dial connects as user with extra claims.
func (s *stack) dial(user string, claims map[string]any) *client {
	s.t.Helper()
	return &client{Client: s.Dial(s.t, heraldtest.MintToken(s.t, user, time.Hour, claims)), self: user}
}

// client is one user's WebSocket client. A group's channel carries the
// presence announcements of every participant, the user's own included
// (their is_online reaches a first tab that subscribed before it landed):
// like a chat client, which knows itself, the tests drop those. The user's
// own `entering` is kept: a test checks that it reaches the typist.
type client struct {
	*heraldtest.Client
	self    string
	pending []heraldtest.Notification
}

// own says whether n announces the presence of c's own user.
func (c *client) own(n heraldtest.Notification) bool {
	if n.Event != "is_online" && n.Event != "is_offline" {
		return false
	}
	var o struct {
		ID json.RawMessage `json:"id"`
	}
	return json.Unmarshal(n.Object, &o) == nil && strings.Trim(string(o.ID), `"`) == c.self
}

// take keeps what b holds besides the user's own presence.
func (c *client) take(b []heraldtest.Notification) {
	for _, n := range b {
		if !c.own(n) {
			c.pending = append(c.pending, n)
		}
	}
}

// Notifications waits for n notifications (across batches) and returns them.
func (c *client) Notifications(t testing.TB, n int) []heraldtest.Notification {
	t.Helper()
	deadline := time.NewTimer(heraldtest.Timeout)
	defer deadline.Stop()
	for len(c.pending) < n {
		select {
		case b := <-c.Batches:
			c.take(b)
		case <-deadline.C:
			t.Fatalf("got %d notifications, want %d: %+v", len(c.pending), n, c.pending)
		}
	}
	out := c.pending[:n:n]
	c.pending = c.pending[n:]
	return out
}

// batch waits for the next batch that holds more than the user's own
// presence, and returns the rest of it.
func (c *client) batch(t testing.TB) []heraldtest.Notification {
	t.Helper()
	require.Empty(t, c.pending)
	deadline := time.NewTimer(heraldtest.Timeout)
	defer deadline.Stop()
	for {
		select {
		case b := <-c.Batches:
			if c.take(b); len(c.pending) > 0 {
				out := c.pending
				c.pending = nil
				return out
			}
		case <-deadline.C:
			t.Fatal("no batch")
		}
	}
}

// NoNotification fails the test if a notification arrives within d.
func (c *client) NoNotification(t testing.TB, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		require.Empty(t, c.pending, "unexpected notifications")
		select {
		case b := <-c.Batches:
			c.take(b)
		case <-timer.C:
			return
		}
	}
}

// pluginPid finds the chat plugin process among herald's children.
func (s *stack) pluginPid() int { return s.PluginProcess() }

// kill9 kills the plugin and waits for herald to have restarted it.
func (s *stack) kill9() { s.t.Helper(); s.Kill9(s.t) }

// killPlugin kills the plugin with SIGKILL and returns its pid.
func (s *stack) killPlugin() int { s.t.Helper(); return s.KillPlugin(s.t) }

// waitRestart waits for a chat plugin process other than old, and ready.
func (s *stack) waitRestart(old int) { s.t.Helper(); s.WaitRestart(s.t, old) }

// noEvent fails the test if a notification with event reaches c within d.
func noEvent(t *testing.T, c *client, event string, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case b := <-c.Batches:
			for _, n := range b {
				require.NotEqual(t, event, n.Event, "%+v", n)
			}
		case <-timer.C:
			return
		}
	}
}

// one waits for exactly one notification and returns it.
func one(t *testing.T, c *client) heraldtest.Notification {
	t.Helper()
	return c.Notifications(t, 1)[0]
}

// until waits for a notification with event and returns it, passing over
// presence announcements (of users whose announcement may land just after
// c subscribed) and nothing else.
func until(t *testing.T, c *client, event string) heraldtest.Notification {
	t.Helper()
	for {
		n := one(t, c)
		if n.Event == event {
			return n
		}
		require.Contains(t, []string{"is_online", "is_offline"}, n.Event, "%+v", n)
	}
}

func TestIntegrationEveryEventAsTheSourceShowsIt(t *testing.T) {
	// The notifications of one publish share a frame when they all reach
	// the connection within delivery.max_delay: a loaded machine can spread
	// them over more than the default 2ms, so this test gives them 1s.
	s := startStackWith(t, t.TempDir(), "3s", "delivery {\n  max_delay = \"1s\"\n}\n")
	s.member(2, 72)
	s.member(2, 87)
	s.member(78, 383)
	s.member(78, 384)

	u72 := s.dial("72", nil)
	u72.Subscribe(t, "chat:group:2", "chat:user:72")

	// new message: the source's example, byte for byte inside object.
	s.mustBackend("objectChanged", json.RawMessage(`{"event":"new","object_type":"message","object":`+seedMessage+`}`))
	n := one(t, u72)
	require.Equal(t, "chat:group:2", n.Channel)
	require.Equal(t, "new", n.Event)
	require.Equal(t, "message", n.ObjectType)
	require.Empty(t, n.ObjectName)
	require.Equal(t, seedMessage, string(n.Object))
	require.NotEmpty(t, n.ID)
	require.NotZero(t, n.Seq) // (72's own is_online may have come first on the group's channel)
	require.NotZero(t, n.Timestamp)

	// changed / deleted, several at once: one batch, oldest first.
	s.mustBackend("objectChanged", map[string]any{"changes": []any{
		map[string]any{"event": "changed", "object_type": "message", "object": json.RawMessage(`{"id":8,"group_id":2,"text":"hello world ;))","edited_at":"2018-10-15T17:55:00Z"}`)},
		map[string]any{"event": "deleted", "object_type": "message", "object": json.RawMessage(`{"id":8,"group_id":2,"deleted_at":"2018-10-15T17:56:00Z"}`)},
		map[string]any{"event": "changed", "object_type": "group", "object": json.RawMessage(`{"id":2,"name":"general"}`)},
		map[string]any{"event": "changed", "object_type": "subscription", "object": json.RawMessage(`{"id":4,"user_id":72,"group_id":2}`)},
	}})
	batch := u72.batch(t)
	require.Len(t, batch, 4, "one objectChanged call, one batch")
	for i, want := range []struct{ ch, ev, typ, obj string }{
		{"chat:group:2", "changed", "message", `{"id":8,"group_id":2,"text":"hello world ;))","edited_at":"2018-10-15T17:55:00Z"}`},
		{"chat:group:2", "deleted", "message", `{"id":8,"group_id":2,"deleted_at":"2018-10-15T17:56:00Z"}`},
		{"chat:group:2", "changed", "group", `{"id":2,"name":"general"}`},
		{"chat:user:72", "changed", "subscription", `{"id":4,"user_id":72,"group_id":2}`},
	} {
		require.Equal(t, want.ch, batch[i].Channel)
		require.Equal(t, want.ev, batch[i].Event)
		require.Equal(t, want.typ, batch[i].ObjectType)
		require.Equal(t, want.obj, string(batch[i].Object))
	}

	// entering: once, on the group's channel; each participant subscribed
	// there gets it, the typist too (it knows itself by user_id).
	u384 := s.dial("384", nil)
	u384.Subscribe(t, "chat:group:78") // the group's channel only
	typist := s.dial("383", nil)
	typist.Subscribe(t, "chat:user:383", "chat:group:78")
	n = one(t, u384)
	require.Equal(t, "chat:group:78", n.Channel)
	require.Equal(t, "is_online", n.Event, "383 came online")
	require.Equal(t, `{"id":383}`, string(n.Object))
	res := typist.MustCall(t, "chat.saveDraft", map[string]any{"group_id": 78, "text": "hel"})
	require.JSONEq(t, `{"entering":true}`, string(res))
	n = one(t, u384)
	require.Equal(t, "chat:group:78", n.Channel)
	require.Equal(t, "entering", n.Event)
	require.Equal(t, "no matter", n.ObjectName)
	require.Equal(t, "draft", n.ObjectType)
	require.Equal(t, `{"user_id":383,"group_id":78}`, string(n.Object))
	// (The typist may get 384's is_online first: it is announced when the
	// State records it, which can be after the typist subscribed.)
	mine := until(t, typist, "entering")
	require.Equal(t, "chat:group:78", mine.Channel)
	require.Equal(t, n.Seq, mine.Seq, "the same notification")
	noEvent(t, typist, "entering", 300*time.Millisecond)

	// is_online / is_offline: the user, with the nick of the token, on the
	// channel of their group; a tab on chat:user:72 only gets none of it.
	userOnly := s.dial("72", nil)
	userOnly.Subscribe(t, "chat:user:72")
	ivan := s.dial("87", map[string]any{"nick": "ivan"})
	n = one(t, u72)
	require.Equal(t, "chat:group:2", n.Channel)
	require.Equal(t, "is_online", n.Event)
	require.Equal(t, "user", n.ObjectName)
	require.Equal(t, "user", n.ObjectType)
	require.Equal(t, `{"id":87,"nick":"ivan"}`, string(n.Object))
	ivan.Close()
	n = one(t, u72)
	require.Equal(t, "chat:group:2", n.Channel)
	require.Equal(t, "is_offline", n.Event)
	require.Equal(t, `{"id":87,"nick":"ivan"}`, string(n.Object))
	u384.NoNotification(t, 100*time.Millisecond)
	userOnly.NoNotification(t, 100*time.Millisecond)
}

func TestIntegrationAuthorization(t *testing.T) {
	s := startStack(t, t.TempDir(), "3s")
	s.member(78, 383)
	c := s.dial("383", nil)
	c.Subscribe(t, "chat:group:78", "chat:user:383")

	for _, tc := range []struct {
		channels []string
		refused  map[string]int
	}{
		{[]string{"chat:group:2"}, map[string]int{"chat:group:2": -32003}},
		{[]string{"chat:user:72"}, map[string]int{"chat:user:72": -32003}},
		{[]string{"chat:user:384", "chat:group:79"}, map[string]int{"chat:user:384": -32003, "chat:group:79": -32003}},
		{[]string{"chat:room:1"}, map[string]int{"chat:room:1": -32004}},
	} {
		// All or nothing: each refused channel is listed with its own code.
		e := c.CallErr(t, "subscribe", map[string]any{"channels": append([]string{"chat:user:383"}, tc.channels...)})
		var data struct {
			Channels []struct {
				Channel string `json:"channel"`
				Code    int    `json:"code"`
				Reason  string `json:"reason"`
			} `json:"channels"`
		}
		require.NoError(t, json.Unmarshal(e.Data, &data), "%s", e.Data)
		got := map[string]int{}
		for _, r := range data.Channels {
			got[r.Channel] = r.Code
			require.NotEmpty(t, r.Reason)
		}
		require.Equal(t, tc.refused, got)
	}

	// The backend methods are the backend's.
	e := c.CallErr(t, "chat.addMember", map[string]any{"group_id": 78, "user_id": 999})
	require.Equal(t, -32003, e.Code)

	// A removed participant loses the group's channel at once, and is told.
	s.mustBackend("removeMember", map[string]any{"group_id": 78, "user_id": 383})
	n := c.Notifications(t, 1)[0]
	require.Equal(t, "$server", n.Channel)
	require.Equal(t, "unsubscribed", n.Event)
	require.JSONEq(t, `{"channels":[{"channel":"chat:group:78","reason":"ended by plugin chat"}]}`, string(n.Object))
	s.mustBackend("objectChanged", map[string]any{"event": "new", "object_type": "message", "object": map[string]any{"id": 1, "group_id": 78}})
	c.NoNotification(t, 300*time.Millisecond)
	e = c.CallErr(t, "subscribe", map[string]any{"channel": "chat:group:78"})
	require.Equal(t, -32003, e.Code)
}

func TestIntegrationEnteringDebounce(t *testing.T) {
	s := startStack(t, t.TempDir(), "2s")
	s.member(78, 383)
	s.member(78, 384)
	rx := s.dial("384", nil)
	rx.Subscribe(t, "chat:group:78")
	typist := s.dial("383", nil)
	typist.Subscribe(t, "chat:user:383") // its own channel gets no entering
	require.Equal(t, "is_online", one(t, rx).Event, "383 came online")

	// The window starts when the plugin handles the first draft, which is
	// before the call returns: timing from the return errs on the safe side.
	typist.MustCall(t, "chat.saveDraft", map[string]any{"group_id": 78, "text": "h"})
	first := time.Now()
	for _, text := range []string{"he", "hel", "hell", "hello"} {
		require.JSONEq(t, `{"entering":false}`,
			string(typist.MustCall(t, "chat.saveDraft", map[string]any{"group_id": 78, "text": text})))
	}
	n := one(t, rx)
	require.Equal(t, "chat:group:78", n.Channel)
	require.Equal(t, "entering", n.Event)
	rx.NoNotification(t, 300*time.Millisecond)

	time.Sleep(time.Until(first.Add(2100 * time.Millisecond)))
	typist.MustCall(t, "chat.saveDraft", map[string]any{"group_id": 78, "text": "hello!"})
	require.Equal(t, "entering", one(t, rx).Event, "a new window, a new entering")
	noEvent(t, typist, "entering", 100*time.Millisecond)
}

// Two tabs are one user, and a plugin killed with -9 in between neither
// forgets the user nor announces anything twice.
func TestIntegrationPresenceTwoTabsAcrossKill9(t *testing.T) {
	s := startStack(t, t.TempDir(), "3s")
	s.member(5, "alice")
	s.member(5, "bob")
	bob := s.dial("bob", nil)
	bob.Subscribe(t, "chat:group:5")

	tab1 := s.dial("alice", map[string]any{"nick": "Alice"})
	n := one(t, bob)
	require.Equal(t, "is_online", n.Event)
	require.Equal(t, `{"id":"alice","nick":"Alice"}`, string(n.Object))
	tab2 := s.dial("alice", map[string]any{"nick": "Alice"})
	bob.NoNotification(t, 300*time.Millisecond)

	s.kill9()
	// The restarted plugin rebuilds presence from the host's replay: alice is
	// still online, so nothing goes out (the replay settles within ~1s).
	bob.NoNotification(t, 1500*time.Millisecond)

	tab1.Close()
	bob.NoNotification(t, 500*time.Millisecond)
	tab2.Close()
	n = one(t, bob)
	require.Equal(t, "chat:group:5", n.Channel)
	require.Equal(t, "is_offline", n.Event)
	require.Equal(t, `{"id":"alice","nick":"Alice"}`, string(n.Object))

	// Alice leaves right after a crash (while the plugin is down, or just
	// back: either way the dead process's expired liveness record or the
	// live event tells): one is_offline.
	tab3 := s.dial("alice", nil)
	require.Equal(t, "is_online", one(t, bob).Event)
	old := s.killPlugin()
	tab3.Close()
	s.waitRestart(old)
	n = one(t, bob)
	require.Equal(t, "is_offline", n.Event)
	require.Equal(t, `{"id":"alice"}`, string(n.Object))
	bob.NoNotification(t, 1500*time.Millisecond)
}

func TestIntegrationMembershipSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s := startStack(t, dir, "3s")
	s.member(78, 383)
	s.member(78, "alice")
	s.mustBackend("removeMember", map[string]any{"group_id": 78, "user_id": "alice"})
	s.Stop(t)

	s2 := startStack(t, dir, "3s")
	c := s2.dial("383", nil)
	c.Subscribe(t, "chat:group:78")
	require.JSONEq(t, `{"group_id":78,"user_ids":[383]}`, string(s2.mustBackend("members", map[string]any{"group_id": 78})))
	a := s2.dial("alice", nil)
	require.Equal(t, -32003, a.CallErr(t, "subscribe", map[string]any{"channel": "chat:group:78"}).Code)

	// And across a plugin crash.
	s2.kill9()
	s2.mustBackend("objectChanged", map[string]any{"event": "new", "object_type": "message", "object": map[string]any{"id": 9, "group_id": 78}})
	require.JSONEq(t, `{"id":9,"group_id":78}`, string(one(t, c).Object))
}

func TestIntegrationBadBodiesAre400(t *testing.T) {
	s := startStack(t, t.TempDir(), "3s")
	for _, tc := range []struct {
		method, body, field string
	}{
		{"addMember", `{"user_id":383}`, "group_id"},
		{"addMember", `{"group_id":"a b","user_id":383}`, "group_id"},
		{"removeMember", `{"group_id":78}`, "user_id"},
		{"objectChanged", `{"event":"new","object_type":"message","object":{"id":8}}`, "object.group_id"},
		{"objectChanged", `{"event":"posted","object_type":"message","object":{"group_id":2}}`, "event"},
		{"objectChanged", `{"event":"new","object_type":"poll","object":{"id":8}}`, "object_type"},
		{"objectChanged", `{"changes":[{"event":"new","object_type":"user","object":{"nick":"x"}}]}`, "changes[0].object.id"},
		{"saveDraft", `{"group_id":78,"text":"x"}`, "user_id"},
		// A key given twice: the plugin would route by one value while a
		// client's parser may read the other.
		{"objectChanged", `{"event":"new","object_type":"message","object":{"id":9,"group_id":3,"group_id":2}}`, "object.group_id"},
		{"objectChanged", `{"changes":[{"event":"new","event":"deleted","object_type":"group","object":{"id":2}}]}`, "changes[0].event"},
		{"addMember", `{"group_id":78,"user_id":383,"user_id":384}`, "user_id"},
	} {
		st, body := s.backend(tc.method, json.RawMessage(tc.body))
		require.Equal(t, http.StatusBadRequest, st, "%s %s: %s", tc.method, tc.body, body)
		var e struct {
			Error struct {
				Code    int             `json:"code"`
				Message string          `json:"message"`
				Data    json.RawMessage `json:"data"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(body, &e), "%s", body)
		require.Equal(t, -32602, e.Error.Code)
		require.Contains(t, e.Error.Message, tc.field)
		require.JSONEq(t, `{"field":"`+tc.field+`"}`, string(e.Error.Data))
	}
	// The form a backend does not use may come as null (a serializer's
	// empty field): it counts as absent.
	s.mustBackend("objectChanged", json.RawMessage(`{"event":"changed","object_type":"group","object":{"id":5},"changes":null}`))
	st, _ := s.Do(t, http.MethodPost, "/v1/plugins/chat/addMember", map[string]any{"group_id": 1, "user_id": 1}, "", nil)
	require.Equal(t, http.StatusUnauthorized, st)
}

// startCluster starts n herald nodes on one NATS server (JetStream in
// process), each running its own chat plugin; the plugins' State is then the
// JetStream KV bucket they share.
func startCluster(t *testing.T, n int) []*stack {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts NATS, herald nodes and their chat plugins")
	}
	ns := natstest.Start(t)
	var nodes []*stack
	for _, h := range heraldtest.StartPluginNodes(t, n, heraldtest.PluginOptions{Name: "chat", NATS: ns.URL(),
		Config: "    entering_window = \"3s\"\n    liveness_ttl = \"3s\""}) {
		nodes = append(nodes, &stack{Stack: h, t: t})
	}
	return nodes
}

// Online status is per user across the nodes: one is_online when the
// user's first connection anywhere opens, one is_offline when the last one
// anywhere closes, also when the node holding it dies; membership recorded
// through one node holds on the other.
func TestIntegrationClusterOnlineStatusAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	a.member(5, "alice")
	a.member(5, "bob")

	// bob reads the group on B (a membership recorded through A); what
	// either node announces on the group's channel reaches him.
	bob := b.dial("bob", nil)
	bob.Subscribe(t, "chat:group:5")

	onA := a.dial("alice", map[string]any{"nick": "Alice"})
	n := one(t, bob)
	require.Equal(t, "chat:group:5", n.Channel)
	require.Equal(t, "is_online", n.Event)
	require.Equal(t, `{"id":"alice","nick":"Alice"}`, string(n.Object))
	onB := b.dial("alice", nil)
	bob.NoNotification(t, 500*time.Millisecond)
	onA.Close()
	bob.NoNotification(t, 500*time.Millisecond)
	onB.Close()
	n = one(t, bob)
	require.Equal(t, "is_offline", n.Event)
	require.Equal(t, `{"id":"alice","nick":"Alice"}`, string(n.Object))

	// entering through either node: once per window.
	st, res := a.backend("saveDraft", map[string]any{"group_id": 5, "user_id": "alice", "text": "h"})
	require.Equal(t, http.StatusOK, st, "%s", res)
	st, res = b.backend("saveDraft", map[string]any{"group_id": 5, "user_id": "alice", "text": "he"})
	require.Equal(t, http.StatusOK, st, "%s", res)
	require.JSONEq(t, `{"entering":false}`, string(res))
	n = one(t, bob)
	require.Equal(t, "chat:group:5", n.Channel)
	require.Equal(t, "entering", n.Event)

	// The node holding alice's only connection dies with its plugin: when
	// its liveness record expires, the other node announces her offline.
	a.dial("alice", nil)
	require.Equal(t, "is_online", one(t, bob).Event)
	plugin := a.pluginPid()
	a.Signal(t, syscall.SIGKILL)
	if plugin != 0 {
		_ = syscall.Kill(plugin, syscall.SIGKILL) // a dead node takes its plugin along
	}
	n = one(t, bob)
	require.Equal(t, "is_offline", n.Event)
	require.Equal(t, `{"id":"alice"}`, string(n.Object))
	bob.NoNotification(t, 500*time.Millisecond)

	// A removal through the surviving node ends bob's subscription there.
	require.JSONEq(t, `{"group_id":5,"user_id":"bob","removed":true,"unsubscribed":1}`,
		string(b.mustBackend("removeMember", map[string]any{"group_id": 5, "user_id": "bob"})))
	require.Equal(t, -32003, b.dial("bob", nil).CallErr(t, "subscribe", map[string]any{"channel": "chat:group:5"}).Code)
}
