package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

// These tests run several chat processes on one State, as the nodes of a
// cluster run theirs on one JetStream bucket: each has its own host (its
// node's connections and emits), and they share only the State.

func nodes(t *testing.T, n int, extra map[string]any) []*env {
	t.Helper()
	st := newMemState(t)
	out := make([]*env, n)
	for i := range out {
		out[i] = start(t, st, extra)
	}
	return out
}

// idleAll waits until every node is done.
func idleAll(ns []*env) { ns[0].idle(ns[1:]...) }

// settledAll waits until every node ended the replay that follows its
// start: a node that got no event yet ends it on its settle timer, with a
// reap, which a test must not have land in the middle of its steps.
func settledAll(t *testing.T, ns []*env) {
	t.Helper()
	for _, e := range ns {
		require.Eventually(t, func() bool {
			e.p.mu.Lock()
			defer e.p.mu.Unlock()
			return !e.p.resyncing
		}, 10*time.Second, time.Millisecond, "a node never ended its start's replay")
	}
	idleAll(ns)
}

// emitted counts, over every node, the notifications with event about the
// given object id that went to channel.
func emitted(ns []*env, channel, event, object string) int {
	n := 0
	for _, e := range ns {
		for _, x := range e.Emitted() {
			if x.Channel == channel && x.Event == event && (object == "" || string(x.Object) == object) {
				n++
			}
		}
	}
	return n
}

// A user who connects on two nodes at once is announced online once, and
// offline once when both connections close at once; for many users in
// parallel, so that the compare-and-set races really happen.
func TestClusterAnnouncesOnceAcrossNodes(t *testing.T) {
	ns := nodes(t, 2, nil)
	a := ns[0]
	const users = 20
	for i := 0; i < users; i++ {
		a.member(1, fmt.Sprintf("u%d", i))
	}
	a.member(1, "w")
	a.join("w", "w", 1) // w shows the group: subscribed to its channel only
	idleAll(ns)
	a.st.SetAfterRead(overlapReads)

	each := func(f func(e *env, i int)) {
		var wg sync.WaitGroup
		for i := 0; i < users; i++ {
			for _, e := range ns {
				wg.Add(1)
				go func() { defer wg.Done(); f(e, i) }()
			}
		}
		wg.Wait()
		idleAll(ns)
	}
	each(func(e *env, i int) {
		e.Events(sdk.Event{Kind: sdk.Connected, ConnID: fmt.Sprintf("c%d", i), UserID: fmt.Sprintf("u%d", i)})
	})
	for i := 0; i < users; i++ {
		require.Equal(t, 1, emitted(ns, "chat:group:1", "is_online", fmt.Sprintf(`{"id":"u%d"}`, i)), "u%d", i)
	}
	each(func(e *env, i int) {
		e.Events(sdk.Event{Kind: sdk.Disconnected, ConnID: fmt.Sprintf("c%d", i), UserID: fmt.Sprintf("u%d", i)})
	})
	for i := 0; i < users; i++ {
		require.Equal(t, 1, emitted(ns, "chat:group:1", "is_offline", fmt.Sprintf(`{"id":"u%d"}`, i)), "u%d", i)
	}
	require.Equal(t, []string{onlineKey("w")}, a.st.Keys(keyOnline))
}

// The user's last connection closing on another node than the first one
// opened: still one is_online, one is_offline.
func TestClusterPresenceMovesBetweenNodes(t *testing.T) {
	ns := nodes(t, 2, nil)
	a, b := ns[0], ns[1]
	a.member(1, "u")
	a.member(1, "w")
	b.join("w", "w", 1) // w reads the group on B
	idleAll(ns)

	a.Events(sdk.Event{Kind: sdk.Connected, ConnID: "a1", UserID: "u"})
	idleAll(ns)
	// A announced it on the group's channel, which reaches w on B.
	require.Equal(t, 1, emitted(ns[:1], "chat:group:1", "is_online", `{"id":"u"}`))
	b.Events(sdk.Event{Kind: sdk.Connected, ConnID: "b1", UserID: "u"})
	idleAll(ns) // B's connection is in the State before A's closes
	a.Events(sdk.Event{Kind: sdk.Disconnected, ConnID: "a1", UserID: "u"})
	idleAll(ns)
	require.Zero(t, emitted(ns, "chat:group:1", "is_offline", ""), "u is still online on B")
	b.Events(sdk.Event{Kind: sdk.Disconnected, ConnID: "b1", UserID: "u"})
	idleAll(ns)
	require.Equal(t, 1, emitted(ns[1:], "chat:group:1", "is_offline", `{"id":"u"}`))
	require.Equal(t, 1, emitted(ns, "chat:group:1", "is_online", `{"id":"u"}`))
}

// A node dies with connections on it: when its liveness record expires,
// the users it alone held are announced offline once (by one of the
// survivors), and users also connected elsewhere stay online silently.
func TestClusterNodeDeathAnnouncesOfflineOnce(t *testing.T) {
	ns := nodes(t, 3, nil)
	a, b, dying := ns[0], ns[1], ns[2]
	for _, u := range []string{"w", "only", "both"} {
		a.member(1, u)
	}
	a.join("w", "w", 1)
	idleAll(ns)
	dying.Events(sdk.Event{Kind: sdk.Connected, ConnID: "d1", UserID: "only"},
		sdk.Event{Kind: sdk.Connected, ConnID: "d2", UserID: "both"})
	b.Events(sdk.Event{Kind: sdk.Connected, ConnID: "b2", UserID: "both"})
	idleAll(ns)
	require.Equal(t, 1, emitted(ns, "chat:group:1", "is_online", `{"id":"only"}`))
	require.Equal(t, 1, emitted(ns, "chat:group:1", "is_online", `{"id":"both"}`))

	// The node dies: no disconnect reaches anyone, its records stay...
	pid := dying.p.pid
	dying.Close()
	survivors := ns[:2]
	idleAll(survivors)
	require.Zero(t, emitted(ns, "chat:group:1", "is_offline", ""))
	// ...until its liveness record expires.
	expire(t, a.st, procKey(pid))
	idleAll(survivors)
	require.Equal(t, 1, emitted(survivors, "chat:group:1", "is_offline", `{"id":"only"}`))
	require.Zero(t, emitted(survivors, "chat:group:1", "is_offline", `{"id":"both"}`))
	require.Equal(t, []string{onlineKey("both"), onlineKey("w")}, a.st.Keys(keyOnline))
	for _, e := range a.st.Keys(keyOnline) {
		got, err := a.st.Get(t.Context(), e)
		require.NoError(t, err)
		require.NotContains(t, string(got.Value), pid, "the dead node's entries are gone")
	}
}

// A process that won a user's is_offline wrote the tombstone and died
// before deleting it. The tombstone reads as offline: a user who connects
// writes over it and is announced is_online, once; the survivors delete the
// others when the dead process's liveness record expires, and announce no
// is_offline of their own.
func TestClusterTombstoneOfADeadClaimant(t *testing.T) {
	ns := nodes(t, 3, nil)
	a, b, dying := ns[0], ns[1], ns[2]
	for _, u := range []string{"w", "gone", "back"} {
		a.member(1, u)
	}
	a.join("w", "w", 1)
	idleAll(ns)
	dying.Events(sdk.Event{Kind: sdk.Connected, ConnID: "d1", UserID: "gone"},
		sdk.Event{Kind: sdk.Connected, ConnID: "d2", UserID: "back"})
	idleAll(ns)
	require.Equal(t, 1, emitted(ns, "chat:group:1", "is_online", `{"id":"gone"}`))
	require.Equal(t, 1, emitted(ns, "chat:group:1", "is_online", `{"id":"back"}`))
	// b got no event yet: its start's replay ends on a timer, with a
	// reap that would delete the tombstones below before back connects.
	settledAll(t, ns)

	// Both users leave dying's node; it writes their tombstones at the
	// revision it read, as its sync does, and dies before the deletes.
	pid := dying.p.pid
	dying.Close()
	for _, u := range []string{"gone", "back"} {
		e, ok := a.st.Entry(onlineKey(u))
		require.True(t, ok)
		_, err := a.st.Update(t.Context(), onlineKey(u), mustJSON(presenceRecord{User: u, Procs: map[string]procPresence{}}), e.Revision)
		require.NoError(t, err)
	}
	survivors := ns[:2]
	idleAll(survivors)
	require.Contains(t, a.st.Keys(keyOnline), onlineKey("back"), "the tombstone is there when back connects")

	b.Events(sdk.Event{Kind: sdk.Connected, ConnID: "b1", UserID: "back"})
	idleAll(survivors)
	require.Equal(t, 1, emitted(survivors, "chat:group:1", "is_online", `{"id":"back"}`))
	rec, err := a.st.Get(t.Context(), onlineKey("back"))
	require.NoError(t, err)
	require.Contains(t, string(rec.Value), b.p.pid)

	expire(t, a.st, procKey(pid))
	idleAll(survivors)
	require.Zero(t, emitted(survivors, "chat:group:1", "is_offline", ""))
	require.Equal(t, []string{onlineKey("back"), onlineKey("w")}, a.st.Keys(keyOnline), "gone's tombstone is deleted")

	// gone comes back as from any offline.
	a.Events(sdk.Event{Kind: sdk.Connected, ConnID: "a1", UserID: "gone"})
	idleAll(survivors)
	require.Equal(t, 1, emitted(survivors, "chat:group:1", "is_online", `{"id":"gone"}`))
}

// A process whose own liveness record expired (it could not renew in time)
// is reaped by the others like a dead one; it notices, takes a new id and
// writes its users again, so they end online under a live id.
func TestClusterExpiredProcessComesBack(t *testing.T) {
	ns := nodes(t, 2, nil)
	a, b := ns[0], ns[1]
	a.member(1, "u")
	a.member(1, "w")
	b.join("w", "w", 1)
	idleAll(ns)
	a.Events(sdk.Event{Kind: sdk.Connected, ConnID: "a1", UserID: "u"})
	idleAll(ns)
	old := a.p.pid
	expire(t, a.st, procKey(old))
	idleAll(ns)
	require.NotEqual(t, old, a.p.pid)
	require.Contains(t, a.st.Keys(keyProcs), procKey(a.p.pid))
	rec, err := a.st.Get(t.Context(), onlineKey("u"))
	require.NoError(t, err, "u is online again")
	require.Contains(t, string(rec.Value), a.p.pid)
	require.NotContains(t, string(rec.Value), old)
	// B may have announced u offline while reaping, then A online again:
	// never more than that, and u ends announced online.
	on, off := emitted(ns, "chat:group:1", "is_online", `{"id":"u"}`), emitted(ns, "chat:group:1", "is_offline", `{"id":"u"}`)
	require.LessOrEqual(t, off, 1)
	require.Equal(t, off+1, on)
}

// Membership recorded through one node is enforced on the others at once,
// and a removal through one node unsubscribes the user's connections on
// every node.
func TestClusterMembershipIsShared(t *testing.T) {
	ns := nodes(t, 2, nil)
	a, b := ns[0], ns[1]
	a.member(7, "u")
	// B's watch may not have seen it yet: B asks the State.
	refused, err := b.Authorize(sdk.Caller{ConnID: "b1", UserID: "u"}, "chat:group:7")
	require.NoError(t, err)
	require.Empty(t, refused)
	require.JSONEq(t, `{"group_id":7,"user_ids":["u"]}`, string(b.backend("members", map[string]any{"group_id": 7})))
	res, err := b.Call("addMember", sdktest.Backend(), map[string]any{"group_id": 7, "user_id": "u"})
	require.NoError(t, err)
	require.JSONEq(t, `{"group_id":7,"user_id":"u","added":false}`, string(res), "one node added it")

	b.Events(sdk.Event{Kind: sdk.Connected, ConnID: "b1", UserID: "u"})
	b.Subscribe("b1", "chat:group:7")
	idleAll(ns)
	require.Equal(t, []string{"chat:group:7"}, b.Subscriptions("b1"))

	res, err = a.Call("removeMember", sdktest.Backend(), map[string]any{"group_id": 7, "user_id": "u"})
	require.NoError(t, err)
	require.JSONEq(t, `{"group_id":7,"user_id":"u","removed":true,"unsubscribed":0}`, string(res), "A holds none of u's connections")
	idleAll(ns)
	require.Empty(t, b.Subscriptions("b1"), "B unsubscribed its connection")
	refused, err = b.Authorize(sdk.Caller{ConnID: "b1", UserID: "u"}, "chat:group:7")
	require.NoError(t, err)
	require.Len(t, refused, 1)
}

// A subscription authorized on a membership removed meanwhile (the cache
// had not seen the removal yet) is ended when its event comes.
func TestClusterLateSubscriptionToARemovedGroupIsEnded(t *testing.T) {
	ns := nodes(t, 1, nil)
	e := ns[0]
	e.Events(sdk.Event{Kind: sdk.Connected, ConnID: "c", UserID: "u"})
	// The host subscribed it (as if authorized a moment before the
	// membership went away); the plugin has no such membership.
	e.Subscribe("c", "chat:group:9")
	e.idle()
	require.Empty(t, e.Subscriptions("c"))
}

// Two nodes asked for a draft of the same user at the same moment emit one
// `entering` between them.
func TestClusterEnteringOnceAcrossNodes(t *testing.T) {
	ns := nodes(t, 2, map[string]any{"entering_window": "3s"})
	a, b := ns[0], ns[1]
	a.member(78, 383)
	a.member(78, 384)
	b.join("c384", "384", 78)
	idleAll(ns)
	var wg sync.WaitGroup
	for _, e := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.Call("saveDraft", sdktest.Backend(), map[string]any{"group_id": 78, "user_id": 383, "text": "hel"})
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	idleAll(ns)
	require.Equal(t, 1, emitted(ns, "chat:group:78", "entering", ""))
	// Past the window (each node's clock), one more.
	a.clock.add(3 * time.Second)
	b.clock.add(3 * time.Second)
	_, err := b.Call("saveDraft", sdktest.Backend(), map[string]any{"group_id": 78, "user_id": 383, "text": "hello"})
	require.NoError(t, err)
	require.Equal(t, 2, emitted(ns, "chat:group:78", "entering", ""))
}

// Ids that hold "/" or "%", or would make a segment too long, give valid,
// distinct keys (MemState refuses an invalid one, as the host does).
func TestKeysForAwkwardIDs(t *testing.T) {
	e := start(t, nil, nil)
	long := strings.Repeat("/", 128)
	ids := []string{"a/b", "a%2Fb", "a%b", "%h00", long, strings.Repeat("%", 128), "x"}
	for _, g := range ids {
		for _, u := range ids {
			e.member(g, u)
		}
	}
	for _, g := range ids {
		res := e.backend("members", map[string]any{"group_id": g})
		var got struct {
			UserIDs []string `json:"user_ids"`
		}
		require.NoError(t, json.Unmarshal(res, &got))
		require.ElementsMatch(t, ids, got.UserIDs, g)
	}
	require.Len(t, e.st.Keys(keyMembers), len(ids)*len(ids))
	for _, k := range e.st.Keys(keyMembers) {
		for _, sg := range strings.Split(k, "/") {
			require.LessOrEqual(t, len(sg), 255)
		}
	}
}

// One node's last connection closing while another's first opens, for many
// users at once: each user ends online (their record names the node that
// holds them), and the announcements say so (one more is_online than
// is_offline).
func TestClusterHandOverRaces(t *testing.T) {
	ns := nodes(t, 2, nil)
	a, b := ns[0], ns[1]
	const users = 20
	a.member(1, "w")
	a.join("w", "w", 1)
	for i := 0; i < users; i++ {
		a.member(1, fmt.Sprintf("u%d", i))
		a.Events(sdk.Event{Kind: sdk.Connected, ConnID: fmt.Sprintf("a%d", i), UserID: fmt.Sprintf("u%d", i)})
	}
	idleAll(ns)
	a.st.SetAfterRead(overlapReads)
	var wg sync.WaitGroup
	for i := 0; i < users; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			a.Events(sdk.Event{Kind: sdk.Disconnected, ConnID: fmt.Sprintf("a%d", i), UserID: fmt.Sprintf("u%d", i)})
		}()
		go func() {
			defer wg.Done()
			b.Events(sdk.Event{Kind: sdk.Connected, ConnID: fmt.Sprintf("b%d", i), UserID: fmt.Sprintf("u%d", i)})
		}()
	}
	wg.Wait()
	idleAll(ns)
	for i := 0; i < users; i++ {
		u := fmt.Sprintf("u%d", i)
		rec, err := a.st.Get(t.Context(), onlineKey(u))
		require.NoError(t, err, "%s is online on B", u)
		require.Contains(t, string(rec.Value), b.p.pid, u)
		require.NotContains(t, string(rec.Value), a.p.pid, u)
		obj := fmt.Sprintf(`{"id":"%s"}`, u)
		require.Equal(t, emitted(ns, "chat:group:1", "is_offline", obj)+1, emitted(ns, "chat:group:1", "is_online", obj), u)
	}
}

// The same through the SDK's real State client, on sdktest's store with
// real TTLs: a node dies holding a user's only connection, its liveness
// record expires on its own, and the surviving node announces the user
// offline, once.
func TestClusterNodeDeathThroughTheSDK(t *testing.T) {
	st := sdktest.NewState()
	run := func() *sdktest.Harness {
		p := New()
		p.settle = 50 * time.Millisecond
		return st.Start(t, p, map[string]any{"liveness_ttl": "3s"})
	}
	a, dying := run(), run()
	for _, u := range []string{"w", "u"} {
		_, err := a.Call("addMember", sdktest.Backend(), map[string]any{"group_id": 1, "user_id": u})
		require.NoError(t, err)
	}
	a.Events(sdk.Event{Kind: sdk.Connected, ConnID: "w", UserID: "w"})
	a.Subscribe("w", "chat:group:1")
	require.Equal(t, "is_online", a.WaitEmitted(1)[0].Event, "w came online")
	dying.Events(sdk.Event{Kind: sdk.Connected, ConnID: "d", UserID: "u"})
	ns := dying.WaitEmitted(1)
	require.Equal(t, "chat:group:1", ns[0].Channel)
	require.Equal(t, "is_online", ns[0].Event)
	n0 := len(a.Emitted())

	dying.Close() // no disconnect reaches anyone
	ns = a.WaitEmitted(n0 + 1)[n0:]
	require.Len(t, ns, 1)
	require.Equal(t, "chat:group:1", ns[0].Channel)
	require.Equal(t, "is_offline", ns[0].Event)
	require.Equal(t, `{"id":"u"}`, string(ns[0].Object))
	_, stillOnline := st.Entries()[onlineKey("u")]
	require.False(t, stillOnline)
}

// A liveness record that expires without the Watch reporting it (a store
// that loses the expiry) is found by the next renewal's check.
func TestClusterUnreportedExpiryIsFound(t *testing.T) {
	ns := nodes(t, 2, nil)
	a, dying := ns[0], ns[1]
	a.member(1, "w")
	a.member(1, "u")
	a.join("w", "w", 1)
	idleAll(ns)
	dying.Events(sdk.Event{Kind: sdk.Connected, ConnID: "d", UserID: "u"})
	idleAll(ns)
	pid := dying.p.pid
	dying.Close()
	// Gone from the store, unseen by every watch.
	a.st.WriteUnseen(procKey(pid), nil, true)
	a.idle()
	require.Zero(t, emitted(ns, "chat:group:1", "is_offline", ""))
	a.p.renew() // the next renewal
	a.idle()
	require.Equal(t, 1, emitted(ns[:1], "chat:group:1", "is_offline", `{"id":"u"}`))
}

// A membership recorded through another node a moment before a user comes
// online is among the groups announced, even when the announcing node's
// watch lags: the announcer first catches up to its own write.
func TestClusterAnnouncesToGroupsTheWatchHasNotShownYet(t *testing.T) {
	ns := nodes(t, 2, nil)
	a, b := ns[0], ns[1]
	a.member(1, "u")
	idleAll(ns)
	a.st.SetWatchLag(50 * time.Millisecond)
	b.member(2, "u") // in the State; A's watch shows it late
	a.Events(sdk.Event{Kind: sdk.Connected, ConnID: "a1", UserID: "u"})
	idleAll(ns)
	require.Equal(t, 1, emitted(ns[:1], "chat:group:1", "is_online", `{"id":"u"}`))
	require.Equal(t, 1, emitted(ns[:1], "chat:group:2", "is_online", `{"id":"u"}`))
}

// Presence records written by an earlier version, whose process entries
// carry a "listening" flag, are read like any other: a user held only by a
// dead process is announced offline once, on the group's channel, with the
// object the record names; a user held by a live process stays online
// silently when they connect here, and the flag is gone once the record is
// written again.
func TestClusterReadsRecordsOfEarlierVersions(t *testing.T) {
	st := newMemState(t)
	ctx := t.Context()
	for _, u := range []string{"gone", "stays", "w"} {
		_, err := st.Put(ctx, memberKey("1", u), mustJSON(membership{Group: "1", User: u}))
		require.NoError(t, err)
	}
	const dead, live = "00000000000000de", "00000000000000aa"
	_, err := st.Put(ctx, procKey(live), mustJSON(procRecord{Started: "2026-11-29T00:00:00Z"}))
	require.NoError(t, err)
	_, err = st.Put(ctx, onlineKey("gone"), []byte(`{"user":"gone","procs":{"`+dead+`":{"listening":true}},"object":{"id":"gone","nick":"old"}}`))
	require.NoError(t, err)
	_, err = st.Put(ctx, onlineKey("stays"), []byte(`{"user":"stays","procs":{"`+live+`":{"listening":true}},"object":{"id":"stays"}}`))
	require.NoError(t, err)

	ns := []*env{start(t, st, nil)}
	e := ns[0]
	e.join("w", "w", 1)
	settledAll(t, ns)
	require.Equal(t, 1, emitted(ns, "chat:group:1", "is_offline", `{"id":"gone","nick":"old"}`))
	require.NotContains(t, st.Keys(keyOnline), onlineKey("gone"))

	e.Events(sdk.Event{Kind: sdk.Connected, ConnID: "s", UserID: "stays"})
	e.idle()
	require.Zero(t, emitted(ns, "chat:group:1", "is_online", `{"id":"stays"}`), "stays was online already")
	rec, ok := st.Entry(onlineKey("stays"))
	require.True(t, ok)
	require.JSONEq(t, `{"user":"stays","procs":{"`+live+`":{},"`+e.p.pid+`":{}},"object":{"id":"stays"}}`, string(rec.Value))
}
