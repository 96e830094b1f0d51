package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

// The source's examples, verbatim.
const (
	seedMessage = `{"id":8,"user_id":72,"group_id":2,"deleted_at":null,"serial":8,"text":"hello world ;)","edited_at":null,"created_at":"2018-10-15T17:54:41Z"}`
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newMemState is the State the tests' processes share: sdktest.MemState on
// a clock that stands still, so that a TTL ends only when a test says so
// (expire), as a node's death would end its liveness record.
func newMemState(t testing.TB) *sdktest.MemState {
	t.Helper()
	st := sdktest.NewMemState()
	still := time.Unix(1539625681, 0)
	st.SetClock(func() time.Time { return still })
	return st
}

// expire ends key as its TTL would.
func expire(t testing.TB, st *sdktest.MemState, key string) {
	t.Helper()
	require.NoError(t, st.Expire(key))
}

// overlapReads makes every State read wait a little after reading, so that
// two processes' read-modify-write cycles overlap as on a busy cluster
// (without it the in-memory store answers too fast for races to happen).
func overlapReads(string) {
	time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
}

type env struct {
	*sdktest.Harness
	t     *testing.T
	st    *sdktest.MemState
	p     *Chat
	clock *fakeClock
}

// start runs the plugin on State st (nil for a fresh one) with extra
// config. Several plugins started on one State behave as the chat
// processes of several nodes.
func start(t *testing.T, st *sdktest.MemState, extra map[string]any) *env {
	t.Helper()
	if st == nil {
		st = newMemState(t)
	}
	cfg := map[string]any{}
	for k, v := range extra {
		cfg[k] = v
	}
	clock := &fakeClock{t: time.Unix(1539625681, 0)}
	p := New()
	p.now = clock.now
	p.settle = 50 * time.Millisecond
	p.stateOf = func(sdk.Host) (sdk.State, error) { return st, nil }
	return &env{Harness: sdktest.Start(t, p, cfg), t: t, st: st, p: p, clock: clock}
}

// idle waits until the plugins on e's State have done everything their
// events and the State's changes asked of them.
func (e *env) idle(others ...*env) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for round := 0; ; round++ {
		require.Less(e.t, round, 1000, "the plugins never went idle")
		busy, err := e.st.Settle(10 * time.Second)
		require.NoError(e.t, err)
		for _, x := range append([]*env{e}, others...) {
			if x.p.work.waitIdle(ctx) {
				busy = true
			}
		}
		require.NoError(e.t, ctx.Err(), "the plugins never went idle")
		if !busy {
			return
		}
	}
}

// backend calls a method with backend rights and fails on error.
func (e *env) backend(method string, params any) json.RawMessage {
	e.t.Helper()
	res, err := e.Call(method, sdktest.Backend(), params)
	require.NoError(e.t, err, "%s %v", method, params)
	return res
}

func (e *env) member(group, user any) {
	e.t.Helper()
	e.backend("addMember", map[string]any{"group_id": group, "user_id": user})
}

// online connects conn for user and subscribes it to the user's channel.
func (e *env) online(connID, user string, claims map[string]any) {
	e.t.Helper()
	e.Events(sdk.Event{Kind: sdk.Connected, ConnID: connID, UserID: user, Claims: claims})
	e.Subscribe(connID, "chat:user:"+user)
}

// join connects conn for user and subscribes it to the channels of groups
// only, as a client that shows those groups does.
func (e *env) join(connID, user string, groups ...any) {
	e.t.Helper()
	e.Events(sdk.Event{Kind: sdk.Connected, ConnID: connID, UserID: user})
	for _, g := range groups {
		e.Subscribe(connID, fmt.Sprintf("chat:group:%v", g))
	}
}

// reaching lists the notifications of ns that reach connection connID: the
// host delivers a channel's notifications to every subscriber of it.
func (e *env) reaching(connID string, ns []sdktest.Emitted) []sdktest.Emitted {
	e.t.Helper()
	subs := map[string]bool{}
	for _, ch := range e.Subscriptions(connID) {
		subs[ch] = true
	}
	var out []sdktest.Emitted
	for _, n := range ns {
		if subs[n.Channel] {
			out = append(out, n)
		}
	}
	return out
}

// count is how many notifications were emitted, once the plugin is idle.
func (e *env) count() int {
	e.t.Helper()
	e.idle()
	return len(e.Emitted())
}

// since returns what was emitted after the first n notifications, once
// the plugin is idle.
func (e *env) since(n int) []sdktest.Emitted {
	e.t.Helper()
	e.idle()
	return e.Emitted()[n:]
}

func invalid(t *testing.T, err error) *sdk.Error {
	t.Helper()
	var se *sdk.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, sdk.CodeInvalidParams, se.Code, se.Message)
	return se
}

func TestManifest(t *testing.T) {
	e := start(t, nil, nil)
	m := e.Manifest()
	require.Equal(t, "chat", m.Name)
	require.Equal(t, []string{"chat"}, m.Prefixes)
	require.Equal(t, map[string]bool{"addMember": true, "removeMember": true, "members": true,
		"objectChanged": true, "saveDraft": false}, m.Methods)
	require.True(t, m.Authorizes)
	require.True(t, m.WantsEvents)
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		want string
	}{
		{"bad window", map[string]any{"entering_window": "soon"}, "entering_window"},
		{"negative window", map[string]any{"entering_window": "-1s"}, "entering_window"},
		{"short liveness", map[string]any{"liveness_ttl": "2s"}, "liveness_ttl"},
		{"long liveness", map[string]any{"liveness_ttl": "11m"}, "liveness_ttl"},
		{"unknown key", map[string]any{"colour": "red"}, "colour"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New()
			st := newMemState(t)
			p.stateOf = func(sdk.Host) (sdk.State, error) { return st, nil }
			_, err := sdktest.StartErr(t, p, tc.cfg)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.Empty(t, st.Keys(""), "a refused config writes nothing")
		})
	}
}

// A chat.db of an earlier version in data_dir stops the plugin: its
// memberships would be lost silently.
func TestOldChatDBStopsTheStart(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chat.db"), []byte("old"), 0o600))
	p := New()
	st := newMemState(t)
	p.stateOf = func(sdk.Host) (sdk.State, error) { return st, nil }
	_, err := sdktest.StartErr(t, p, map[string]any{"data_dir": dir})
	require.Error(t, err)
	require.Contains(t, err.Error(), "chat.db")
	require.Contains(t, err.Error(), "addMember")
	// Without data_dir, or beside no chat.db, it starts.
	start(t, nil, map[string]any{"data_dir": t.TempDir()})
	start(t, nil, map[string]any{})
}

// A store whose Watch does not start with a Reset still gets the plugin's
// mirrors loaded (the plugin writes until the Watch reports something).
func TestLoadsWithoutAnInitialReset(t *testing.T) {
	st := newMemState(t)
	st.SetSkipFirstReset(true)
	_, err := st.Put(t.Context(), memberKey("78", "383"), mustJSON(membership{Group: "78", User: "383"}))
	require.NoError(t, err)
	// A renewal far off: only the plugin's own nudges make a change.
	e := start(t, st, map[string]any{"liveness_ttl": "10m"})
	e.p.cmu.Lock()
	defer e.p.cmu.Unlock()
	require.True(t, e.p.memb.has("78", "383"))
	require.Contains(t, e.p.procs, e.p.pid)
}

// Without Herald's State the plugin refuses to start, saying why.
func TestNoStateIsAnError(t *testing.T) {
	p := New()
	p.stateOf = func(sdk.Host) (sdk.State, error) { return nil, sdk.ErrNoState }
	_, err := sdktest.StartErr(t, p, map[string]any{})
	require.Error(t, err)
	require.Contains(t, err.Error(), "chat keeps membership and presence in Herald's State")
	require.Contains(t, err.Error(), sdk.ErrNoState.Error())
}

// A dry run (herald validate) checks the config and touches nothing.
func TestDryRunTouchesNothing(t *testing.T) {
	p := New()
	p.stateOf = func(sdk.Host) (sdk.State, error) {
		t.Error("a dry run asked for the State")
		return nil, sdk.ErrNoState
	}
	require.NoError(t, p.Configure(context.Background(), nil, sdk.NewDryRunConfig(map[string]any{"data_dir": "x"})))
	var se *sdk.Error
	require.ErrorAs(t, p.Configure(context.Background(), nil, sdk.NewDryRunConfig(map[string]any{"liveness_ttl": "1s"})), &se)
	require.NoError(t, p.Drain(context.Background()))
}

func TestAuthorize(t *testing.T) {
	e := start(t, nil, nil)
	e.member(78, 383)
	e.member("team-a", "alice")
	alice := sdk.Caller{ConnID: "c1", UserID: "alice"}
	u383 := sdk.Caller{ConnID: "c2", UserID: "383"}
	for _, tc := range []struct {
		caller  sdk.Caller
		channel string
		code    int // 0: allowed
	}{
		{u383, "chat:group:78", 0},
		{u383, "chat:user:383", 0},
		{alice, "chat:group:team-a", 0},
		{alice, "chat:user:alice", 0},
		{alice, "chat:group:78", sdk.CodeForbidden},
		{alice, "chat:user:383", sdk.CodeForbidden},
		{u383, "chat:user:alice", sdk.CodeForbidden},
		{sdk.Caller{ConnID: "c3"}, "chat:group:78", sdk.CodeForbidden},
		{sdk.Caller{ConnID: "c3"}, "chat:user:", sdk.CodeInvalidParams},
		{alice, "chat:group:", sdk.CodeInvalidParams}, // malformed: no id could make it
		{alice, "chat:user:", sdk.CodeInvalidParams},
		{alice, "chat:room:1", sdk.CodeUnknownNamespace},
	} {
		refused, err := e.Authorize(tc.caller, tc.channel)
		require.NoError(t, err)
		if tc.code == 0 {
			require.Empty(t, refused, "%s as %q", tc.channel, tc.caller.UserID)
			continue
		}
		require.Len(t, refused, 1, "%s as %q", tc.channel, tc.caller.UserID)
		require.Equal(t, tc.code, refused[0].Code)
		require.NotEmpty(t, refused[0].Reason)
	}
}

func TestMessageGoesToItsGroupVerbatim(t *testing.T) {
	e := start(t, nil, nil)
	res := e.backend("objectChanged", json.RawMessage(`{"event":"new","object_type":"message","object":`+seedMessage+`}`))
	require.JSONEq(t, `{"results":[{"channel":"chat:group:2","seq":1,"id":"chat:group:2#1"}]}`, string(res))
	ns := e.Emitted()
	require.Len(t, ns, 1)
	require.Equal(t, "chat:group:2", ns[0].Channel)
	require.Equal(t, "new", ns[0].Event)
	require.Equal(t, "message", ns[0].ObjectType)
	require.Empty(t, ns[0].ObjectName)
	// Byte for byte: the object is the backend's, field order included.
	require.Equal(t, seedMessage, string(ns[0].Object))
}

func TestObjectChangedRoutesEachType(t *testing.T) {
	e := start(t, nil, nil)
	e.member(2, 72)
	e.member(2, 87)
	e.member(3, 87)
	e.member(3, "bob")
	e.member(9, "carol") // shares nothing with 72

	e.backend("objectChanged", map[string]any{"changes": []any{
		map[string]any{"event": "changed", "object_type": "message", "object": json.RawMessage(`{"id":8,"group_id":2,"text":"edited"}`)},
		map[string]any{"event": "deleted", "object_type": "message", "object": json.RawMessage(`{"id":8,"group_id":2}`)},
		map[string]any{"event": "changed", "object_type": "group", "object": json.RawMessage(`{"id":3,"name":"ops"}`)},
		map[string]any{"event": "new", "object_type": "subscription", "object": json.RawMessage(`{"id":5,"user_id":87,"group_id":3}`)},
		map[string]any{"event": "changed", "object_type": "user", "object": json.RawMessage(`{"id":87,"nick":"ivan"}`)},
	}})
	type got struct{ Channel, Event, ObjectType, Object string }
	var out []got
	for _, n := range e.Emitted() {
		out = append(out, got{n.Channel, n.Event, n.ObjectType, string(n.Object)})
	}
	require.Equal(t, []got{
		{"chat:group:2", "changed", "message", `{"id":8,"group_id":2,"text":"edited"}`},
		{"chat:group:2", "deleted", "message", `{"id":8,"group_id":2}`},
		{"chat:group:3", "changed", "group", `{"id":3,"name":"ops"}`},
		{"chat:user:87", "new", "subscription", `{"id":5,"user_id":87,"group_id":3}`},
		// A user change: their own channel, then each co-participant's.
		{"chat:user:87", "changed", "user", `{"id":87,"nick":"ivan"}`},
		{"chat:user:72", "changed", "user", `{"id":87,"nick":"ivan"}`},
		{"chat:user:bob", "changed", "user", `{"id":87,"nick":"ivan"}`},
	}, out)
	// One emit: a client gets them in one batch, oldest first.
	first := e.Emitted()[0].Batch
	for _, n := range e.Emitted() {
		require.Equal(t, first, n.Batch)
	}
}

func TestBackendBodiesNameTheBadField(t *testing.T) {
	e := start(t, nil, nil)
	for _, tc := range []struct {
		method, body, field string
	}{
		{"addMember", `{"user_id":1}`, "group_id"},
		{"addMember", `{"group_id":1}`, "user_id"},
		{"addMember", `{"group_id":1.5,"user_id":1}`, "group_id"},
		{"addMember", `{"group_id":"a b","user_id":1}`, "group_id"},
		{"addMember", `{"group_id":-1,"user_id":1}`, "group_id"},
		{"addMember", `{"group_id":1,"user_id":true}`, "user_id"},
		{"addMember", `{"group_id":1,"user_id":1,"role":"admin"}`, "role"},
		{"removeMember", `{"group_id":null,"user_id":1}`, "group_id"},
		{"members", `{}`, "group_id"},
		{"objectChanged", `{"object_type":"message","object":{"group_id":1}}`, "event"},
		{"objectChanged", `{"event":"created","object_type":"message","object":{"group_id":1}}`, "event"},
		{"objectChanged", `{"event":"new","object_type":"comment","object":{"group_id":1}}`, "object_type"},
		{"objectChanged", `{"event":"new","object_type":"message"}`, "object"},
		{"objectChanged", `{"event":"new","object_type":"message","object":[1]}`, "object"},
		{"objectChanged", `{"event":"new","object_type":"message","object":{"id":8}}`, "object.group_id"},
		{"objectChanged", `{"event":"new","object_type":"group","object":{"group_id":8}}`, "object.id"},
		{"objectChanged", `{"event":"new","object_type":"subscription","object":{"id":8}}`, "object.user_id"},
		{"objectChanged", `{"event":"new","object_type":"user","object":{"id":{}}}`, "object.id"},
		{"objectChanged", `{"changes":[]}`, "changes"},
		{"objectChanged", `{"changes":[{"event":"new","object_type":"message","object":{"group_id":1}},{"event":"new","object_type":"message","object":{}}]}`, "changes[1].object.group_id"},
		{"objectChanged", `{"changes":[{"event":"new","object_type":"message","object":{"group_id":1},"extra":1}]}`, "changes[0].extra"},
		{"objectChanged", `{"event":"new","changes":[]}`, "event"},
		{"saveDraft", `{"group_id":1,"user_id":1}`, "text"},
		{"saveDraft", `{"text":"x","user_id":1}`, "group_id"},
		{"saveDraft", `{"group_id":1,"text":"x"}`, "user_id"},
		{"saveDraft", `{"group_id":1,"text":7,"user_id":1}`, "text"},
	} {
		_, err := e.Call(tc.method, sdktest.Backend(), json.RawMessage(tc.body))
		se := invalid(t, err)
		require.JSONEq(t, `{"field":"`+tc.field+`"}`, string(se.Data), "%s %s: %s", tc.method, tc.body, se.Message)
		require.Contains(t, se.Message, "params."+tc.field)
	}
	for _, body := range []string{`[]`, `"x"`, `null`} {
		_, err := e.Call("addMember", sdktest.Backend(), json.RawMessage(body))
		invalid(t, err)
	}
	require.Empty(t, e.Emitted(), "nothing of a bad request is applied")
}

func TestMembership(t *testing.T) {
	e := start(t, nil, nil)
	require.JSONEq(t, `{"group_id":78,"user_id":383,"added":true}`, string(e.backend("addMember", map[string]any{"group_id": 78, "user_id": 383})))
	// "383" and 383 are one id.
	require.JSONEq(t, `{"group_id":78,"user_id":383,"added":false}`, string(e.backend("addMember", map[string]any{"group_id": "78", "user_id": "383"})))
	e.member(78, "alice")
	require.JSONEq(t, `{"group_id":78,"user_ids":[383,"alice"]}`, string(e.backend("members", map[string]any{"group_id": 78})))

	e.online("c1", "alice", nil)
	e.Subscribe("c1", "chat:group:78")
	res := e.backend("removeMember", map[string]any{"group_id": 78, "user_id": "alice"})
	require.JSONEq(t, `{"group_id":78,"user_id":"alice","removed":true,"unsubscribed":1}`, string(res))
	require.Equal(t, []string{"chat:user:alice"}, e.Subscriptions("c1"), "a removed participant stops reading the group")
	require.JSONEq(t, `{"group_id":78,"user_id":"alice","removed":false,"unsubscribed":0}`,
		string(e.backend("removeMember", map[string]any{"group_id": 78, "user_id": "alice"})))
	refused, err := e.Authorize(e.Client("c1"), "chat:group:78")
	require.NoError(t, err)
	require.Len(t, refused, 1)
}

// entering goes once to the group's channel, so a participant subscribed
// only there gets it (the typist too: its client knows itself by user_id),
// and nothing of it goes to any chat:user channel.
func TestEnteringGoesToTheGroupChannel(t *testing.T) {
	e := start(t, nil, nil)
	e.member(78, 383)
	e.member(78, 384)
	e.member(78, 385) // not connected
	e.member(79, 386) // another group
	e.member(79, 383)
	e.Events(sdk.Event{Kind: sdk.Connected, ConnID: "typist", UserID: "383"})
	e.Subscribe("typist", "chat:user:383")
	e.Subscribe("typist", "chat:group:78")
	e.join("c384", "384", 78)
	e.online("u384", "384", nil) // 384's other tab, on their own channel only
	e.join("c386", "386", 79)
	n0 := e.count()

	res, err := e.Call("saveDraft", e.Client("typist"), map[string]any{"group_id": 78, "text": "hel"})
	require.NoError(t, err)
	require.JSONEq(t, `{"entering":true}`, string(res))
	ns := e.since(n0)
	require.Len(t, ns, 1, "one entering, on the group's channel")
	require.Equal(t, "chat:group:78", ns[0].Channel)
	require.Equal(t, "entering", ns[0].Event)
	require.Equal(t, "no matter", ns[0].ObjectName)
	require.Equal(t, "draft", ns[0].ObjectType)
	require.Equal(t, `{"user_id":383,"group_id":78}`, string(ns[0].Object))
	require.Len(t, e.reaching("c384", ns), 1, "a participant on the group's channel only")
	require.Len(t, e.reaching("typist", ns), 1, "the typist's own client")
	require.Empty(t, e.reaching("u384", ns), "nothing on chat:user")
	require.Empty(t, e.reaching("c386", ns), "another group")
}

func TestEnteringDebounce(t *testing.T) {
	e := start(t, nil, map[string]any{"entering_window": "3s"})
	e.member(78, 383)
	e.member(78, 384)
	e.online("typist", "383", nil)
	e.online("c384", "384", nil)
	draft := func(text string) string {
		res, err := e.Call("saveDraft", e.Client("typist"), map[string]any{"group_id": 78, "text": text})
		require.NoError(t, err)
		return string(res)
	}
	n0 := e.count()
	require.JSONEq(t, `{"entering":true}`, draft("h"))
	for _, s := range []string{"he", "hel", "hell"} {
		e.clock.add(700 * time.Millisecond)
		require.JSONEq(t, `{"entering":false}`, draft(s))
	}
	require.Len(t, e.since(n0), 1, "one burst, one entering")
	e.clock.add(900 * time.Millisecond) // 3s after the first
	require.JSONEq(t, `{"entering":true}`, draft("hello"))
	require.Len(t, e.since(n0), 2)
	// An emptied draft is not typing.
	e.clock.add(10 * time.Second)
	require.JSONEq(t, `{"entering":false}`, draft(""))
	require.Len(t, e.since(n0), 2)
}

func TestSaveDraftRules(t *testing.T) {
	e := start(t, nil, map[string]any{"entering_window": "0s"})
	e.member(78, 383)
	e.member(78, 384)
	e.online("typist", "383", nil)
	e.online("c384", "384", nil)
	e.online("out", "999", nil)

	_, err := e.Call("saveDraft", e.Client("out"), map[string]any{"group_id": 78, "text": "x"})
	var se *sdk.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, sdk.CodeForbidden, se.Code)

	_, err = e.Call("saveDraft", sdk.Caller{ConnID: "anon"}, map[string]any{"group_id": 78, "text": "x"})
	require.ErrorAs(t, err, &se)
	require.Equal(t, sdk.CodeUnauthenticated, se.Code)

	_, err = e.Call("saveDraft", e.Client("typist"), map[string]any{"group_id": 78, "text": "x", "user_id": 384})
	require.Equal(t, `{"field":"user_id"}`, string(invalid(t, err).Data), "a client cannot type as someone else")

	// A backend names the typist; window 0 emits on every draft.
	n0 := e.count()
	e.backend("saveDraft", map[string]any{"group_id": 78, "text": "x", "user_id": 384})
	e.backend("saveDraft", map[string]any{"group_id": 78, "text": "xy", "user_id": 384})
	ns := e.since(n0)
	require.Len(t, ns, 2)
	require.Equal(t, "chat:group:78", ns[0].Channel)
	require.Equal(t, `{"user_id":384,"group_id":78}`, string(ns[1].Object))
}

// is_online and is_offline go to the channel of each group of the user,
// one per group: a participant subscribed only to a group's channel gets
// them there, and nothing of them goes to any chat:user channel.
func TestPresenceTwoTabs(t *testing.T) {
	e := start(t, nil, nil)
	e.member(2, 87)
	e.member(2, 72)
	e.member(3, 87)
	e.member(3, 73)
	e.member(3, 72)
	e.join("w72", "72", 2, 3)
	e.join("w73", "73", 3)
	e.online("u72", "72", nil) // 72's other tab, on their own channel only
	n0 := e.count()

	e.Events(sdk.Event{Kind: sdk.Connected, ConnID: "tab1", UserID: "87", Claims: map[string]any{"nick": "ivan"}})
	ns := e.since(n0)
	require.Len(t, ns, 2, "one per group")
	for i, ch := range []string{"chat:group:2", "chat:group:3"} {
		require.Equal(t, ch, ns[i].Channel)
		require.Equal(t, "is_online", ns[i].Event)
		require.Equal(t, "user", ns[i].ObjectName)
		require.Equal(t, "user", ns[i].ObjectType)
		require.Equal(t, `{"id":87,"nick":"ivan"}`, string(ns[i].Object))
	}
	require.Len(t, e.reaching("w72", ns), 2, "72 shows both groups")
	require.Len(t, e.reaching("w73", ns), 1)
	require.Empty(t, e.reaching("u72", ns), "nothing on chat:user")

	e.Events(sdk.Event{Kind: sdk.Connected, ConnID: "tab2", UserID: "87"})
	e.Events(sdk.Event{Kind: sdk.Disconnected, ConnID: "tab1", UserID: "87"})
	require.Len(t, e.since(n0), 2, "a second tab is the same user")
	e.Events(sdk.Event{Kind: sdk.Disconnected, ConnID: "tab2", UserID: "87"})
	ns = e.since(n0 + 2)
	require.Len(t, ns, 2)
	for i, ch := range []string{"chat:group:2", "chat:group:3"} {
		require.Equal(t, ch, ns[i].Channel)
		require.Equal(t, "is_offline", ns[i].Event)
		require.Equal(t, `{"id":87,"nick":"ivan"}`, string(ns[i].Object))
	}
	require.Len(t, e.reaching("w73", ns), 1)
	require.Empty(t, e.reaching("u72", ns))
	// Idempotent: a repeated or unknown event changes nothing.
	e.Events(sdk.Event{Kind: sdk.Disconnected, ConnID: "tab2", UserID: "87"})
	require.Len(t, e.since(n0), 4)
}

func TestPresenceUsesTheReportedUserObject(t *testing.T) {
	e := start(t, nil, nil)
	e.member(2, 87)
	e.member(2, 72)
	e.online("w72", "72", nil)
	e.backend("objectChanged", json.RawMessage(`{"event":"changed","object_type":"user","object":{"id":87,"nick":"ivan","avatar":"a.png"}}`))
	n0 := e.count()
	e.Events(sdk.Event{Kind: sdk.Connected, ConnID: "t", UserID: "87", Claims: map[string]any{"nick": "token-nick"}})
	ns := e.since(n0)
	require.Len(t, ns, 1)
	require.Equal(t, `{"id":87,"nick":"ivan","avatar":"a.png"}`, string(ns[0].Object))
	// A non-numeric id stays a string; no nick claim, no nick.
	e.member(2, "u-x")
	e.Events(sdk.Event{Kind: sdk.Connected, ConnID: "x", UserID: "u-x"})
	require.Equal(t, `{"id":"u-x"}`, string(e.since(n0)[1].Object))
}

// A Reset followed by the replay of the host's connections announces only
// what changed while the plugin was not listening.
func TestPresenceRebuiltFromReplay(t *testing.T) {
	e := start(t, nil, nil)
	for _, u := range []string{"stays", "leaves", "comes", "watcher"} {
		e.member(1, u)
	}
	e.online("w", "watcher", nil)
	e.Events(sdk.Event{Kind: sdk.Connected, ConnID: "s1", UserID: "stays"},
		sdk.Event{Kind: sdk.Connected, ConnID: "l1", UserID: "leaves"})
	n0 := e.count()

	e.Events(
		sdk.Event{Kind: sdk.Reset, Replay: true},
		sdk.Event{Kind: sdk.Connected, ConnID: "w", UserID: "watcher", Replay: true},
		sdk.Event{Kind: sdk.Subscribed, ConnID: "w", UserID: "watcher", Channel: "chat:user:watcher", Replay: true},
		sdk.Event{Kind: sdk.Connected, ConnID: "s2", UserID: "stays", Replay: true},
		sdk.Event{Kind: sdk.Connected, ConnID: "c1", UserID: "comes", Replay: true},
	)
	// The replay settles after a quiet spell, then the difference goes out.
	// (Different users' announcements are made by different workers: their
	// order between users is not kept.)
	ns := e.WaitEmitted(n0 + 2)[n0:]
	require.ElementsMatch(t, []string{`is_offline {"id":"leaves"}`, `is_online {"id":"comes"}`}, events(ns))
	time.Sleep(150 * time.Millisecond)
	require.Len(t, e.since(n0), 2)

	// A live event ends a replay at once.
	e.Events(sdk.Event{Kind: sdk.Reset, Replay: true},
		sdk.Event{Kind: sdk.Connected, ConnID: "w", UserID: "watcher", Replay: true},
		sdk.Event{Kind: sdk.Subscribed, ConnID: "w", UserID: "watcher", Channel: "chat:user:watcher", Replay: true},
		sdk.Event{Kind: sdk.Connected, ConnID: "s2", UserID: "stays", Replay: true},
		sdk.Event{Kind: sdk.Disconnected, ConnID: "s2", UserID: "stays"})
	ns = e.since(n0 + 2)
	require.ElementsMatch(t, []string{`is_offline {"id":"comes"}`, `is_offline {"id":"stays"}`}, events(ns),
		"comes left during the replay, stays just now")
}

// events lists "<event> <object>" of ns.
func events(ns []sdktest.Emitted) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Event + " " + string(n.Object)
	}
	return out
}

// Membership, user objects and the announced presence survive a restart.
func TestRestartKeepsState(t *testing.T) {
	e := start(t, nil, nil)
	e.member(78, 383)
	e.member(78, 384)
	e.backend("objectChanged", json.RawMessage(`{"event":"new","object_type":"user","object":{"id":384,"nick":"ivan"}}`))
	e.online("a", "383", nil)
	e.online("b", "384", nil)
	e.idle()
	oldPID := e.p.pid
	e.Close()

	e2 := start(t, e.st, nil)
	require.JSONEq(t, `{"group_id":78,"user_ids":[383,384]}`, string(e2.backend("members", map[string]any{"group_id": 78})))
	refused, err := e2.Authorize(sdk.Caller{ConnID: "x", UserID: "383"}, "chat:group:78")
	require.NoError(t, err)
	require.Empty(t, refused)
	// The host replays: 383 is still there, 384 left while the plugin was
	// down. Nothing goes out while the old process's liveness lasts...
	e2.Events(sdk.Event{Kind: sdk.Reset, Replay: true},
		sdk.Event{Kind: sdk.Connected, ConnID: "a", UserID: "383", Replay: true},
		sdk.Event{Kind: sdk.Subscribed, ConnID: "a", UserID: "383", Channel: "chat:user:383", Replay: true})
	e2.Events(sdk.Event{Kind: sdk.Connected, ConnID: "live", UserID: "999"}) // ends the replay
	require.Empty(t, e2.since(0))
	// ...and when it expires, 384 is announced offline, once.
	expire(t, e.st, procKey(oldPID))
	ns := e2.since(0)
	require.Len(t, ns, 1)
	require.Equal(t, "chat:group:78", ns[0].Channel)
	require.Equal(t, "is_offline", ns[0].Event)
	require.Equal(t, `{"id":384,"nick":"ivan"}`, string(ns[0].Object))
	require.Equal(t, []string{onlineKey("383"), onlineKey("999")}, e.st.Keys(keyOnline))
}

func TestJSONID(t *testing.T) {
	for in, want := range map[string]string{
		"87": `87`, "0": `0`, "007": `"007"`, "u-1": `"u-1"`, "-1": `"-1"`,
		"999999999999999": `999999999999999`, "1000000000000000": `"1000000000000000"`,
	} {
		b, err := json.Marshal(jsonID(in))
		require.NoError(t, err)
		require.Equal(t, want, string(b), in)
	}
}

// While the State cannot be reached (NATS down in a cluster), backend calls
// answer -32050 (retry later), and presence work that failed is done once
// it is back.
func TestStateUnavailable(t *testing.T) {
	e := start(t, nil, nil)
	e.member(1, "w")
	e.member(1, "u")
	e.online("w", "w", nil)
	n0 := e.count()

	down := fmt.Errorf("nats: no servers: %w", sdk.ErrStateUnavailable)
	e.st.SetFailing(down)
	_, err := e.Call("addMember", sdktest.Backend(), map[string]any{"group_id": 1, "user_id": "v"})
	var se *sdk.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, sdk.CodePluginUnavailable, se.Code, se.Message)
	require.Contains(t, se.Message, "retry later")
	e.Events(sdk.Event{Kind: sdk.Connected, ConnID: "u1", UserID: "u"})
	require.Empty(t, e.since(n0), "nothing can be decided while the State is down")

	e.st.SetFailing(nil)
	e.p.renew() // the next renewal retries the failed work
	ns := e.since(n0)
	require.Len(t, ns, 1)
	require.Equal(t, "is_online", ns[0].Event)
}

// An announcement's emit is tried again while the host says publishing is
// unavailable, and only then.
func TestEmitRetriesWhileUnavailable(t *testing.T) {
	calls := 0
	err := emitRetrying(t.Context(), func(context.Context) error {
		if calls++; calls < 3 {
			return sdk.Errorf(sdk.CodePluginUnavailable, "broker nats unavailable")
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, calls)

	calls = 0
	err = emitRetrying(t.Context(), func(context.Context) error {
		calls++
		return sdk.Forbidden("not your channel")
	})
	require.Error(t, err)
	require.Equal(t, 1, calls)

	ctx, cancel := context.WithCancel(t.Context())
	calls = 0
	err = emitRetrying(ctx, func(context.Context) error {
		if calls++; calls == 2 {
			cancel()
		}
		return sdk.Errorf(sdk.CodePluginUnavailable, "down")
	})
	require.Error(t, err)
	require.Equal(t, 2, calls, "it stops when ctx ends")
}

// Every bad key of the block is reported, each as its own line naming the
// key (the host shows each at its key's position), in a dry run as at a
// start: an unknown key, two range errors and an earlier version's chat.db
// in data_dir (herald validate refuses what serve would).
func TestConfigReportsEveryBadKeyAtItsKey(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chat.db"), []byte("old"), 0o600))
	p := New()
	p.stateOf = func(sdk.Host) (sdk.State, error) {
		t.Fatal("a dry run took the state")
		return nil, nil
	}
	err := p.Configure(context.Background(), nil, sdk.NewDryRunConfig(map[string]any{
		"foo": 1, "entering_window": "2h", "liveness_ttl": "1s", "data_dir": dir}))
	se := invalid(t, err)
	require.Equal(t, []string{
		"config.foo: unknown key; valid keys are data_dir, entering_window, liveness_ttl",
		"config.entering_window: must be at most 1h, got 2h0m0s",
		"config.liveness_ttl: must be from 3s to 10m, got 1s",
		"config.data_dir: " + filepath.Join(dir, "chat.db") + " holds the memberships of an earlier chat plugin, which this version does not read (it keeps them in Herald's plugin state): record them again with addMember (and user objects with objectChanged), then remove the file",
	}, strings.Split(se.Message, "\n"))

	// Beside no chat.db, the dry run passes.
	require.NoError(t, p.Configure(context.Background(), nil, sdk.NewDryRunConfig(map[string]any{"data_dir": t.TempDir()})))
}
