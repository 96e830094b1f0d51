package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

// Several processes of the plugin on one State behave as the plugin's
// processes on the nodes of a cluster: each has its own host (its own
// harness: its emits, its connections), and they share the store.

func (d *Documents) hasChannel(name string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.channels[name] != nil
}

func (d *Documents) roomCount(id string) int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if r := d.rooms[id]; r != nil {
		return r.count()
	}
	return -1
}

// waitFor waits for cond, which another process's Watch makes true; the
// bound is on the event, far above what it takes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, sdktest.Timeout, 5*time.Millisecond, what)
}

type subscribed struct {
	RoomID  string `json:"roomId"`
	Channel string `json:"channel"`
}

func subscribeOn(t *testing.T, h *sdktest.Harness, method, conn string, params map[string]any) subscribed {
	t.Helper()
	res, err := h.Call(method, h.Client(conn), params)
	require.NoError(t, err)
	var s subscribed
	require.NoError(t, json.Unmarshal(res, &s))
	return s
}

// on returns what h emitted to channel, as Kuzzle objects.
func on(h *sdktest.Harness, channel string) []map[string]any {
	var out []map[string]any
	for _, e := range h.Emitted() {
		if e.Channel == channel {
			var o map[string]any
			_ = json.Unmarshal(e.Object, &o)
			out = append(out, o)
		}
	}
	return out
}

// TestClusterWriteOnOneNodeNotifiesRoomsOfAnother: a room made on node A is
// known to node B through State; a write on B is matched there and emitted
// there, once per phase, to A's channel; A emits nothing for it.
func TestClusterWriteOnOneNodeNotifiesRoomsOfAnother(t *testing.T) {
	st := sdktest.NewState()
	a, ha := New(), (*sdktest.Harness)(nil)
	ha = st.Start(t, a, map[string]any{})
	b := New()
	hb := st.Start(t, b, map[string]any{})
	ha.Connect("a1", "alice")
	s := subscribeOn(t, ha, "subscribe", "a1", map[string]any{"index": "shop", "collection": "items",
		"body": map[string]any{"range": map[string]any{"price": map[string]any{"lt": 10}}}, "state": "all"})
	waitFor(t, "node B learns of A's room", func() bool { return b.hasChannel(s.Channel) })

	_, err := hb.Call("create", sdktest.Backend(), map[string]any{"index": "shop", "collection": "items", "_id": "pen", "body": map[string]any{"price": 5}})
	require.NoError(t, err)
	_, err = hb.Call("update", sdktest.Backend(), map[string]any{"index": "shop", "collection": "items", "_id": "pen", "body": map[string]any{"price": 50}})
	require.NoError(t, err)
	got := on(hb, s.Channel)
	require.Len(t, got, 3)
	for i, want := range [][3]string{{"create", "pending", "in"}, {"create", "done", "in"}, {"update", "done", "out"}} {
		require.Equal(t, want[:], []string{got[i]["action"].(string), got[i]["state"].(string), got[i]["scope"].(string)}, "notification %d", i)
		require.Equal(t, s.Channel, got[i]["room"])
	}
	require.Empty(t, on(ha, s.Channel), "the node that did not write emits nothing")

	// The document is B's write, read from A.
	res, err := ha.Call("get", sdktest.Backend(), map[string]any{"index": "shop", "collection": "items", "_id": "pen"})
	require.NoError(t, err)
	require.JSONEq(t, `{"price":50}`, string(mustField(t, res, "_source")))
}

func mustField(t *testing.T, raw json.RawMessage, k string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &m))
	return m[k]
}

// TestClusterRoomLivesWhileAnyNodeHoldsIt: counts are cluster-wide, and a
// channel whose last subscriber on one node leaves stays while a
// subscriber on another node holds it, even with resume_window 0s; it goes
// when the last one anywhere leaves.
func TestClusterRoomLivesWhileAnyNodeHoldsIt(t *testing.T) {
	st := sdktest.NewState()
	a := New()
	ha := st.Start(t, a, map[string]any{"resume_window": "0s"})
	// B keeps empty channels for an hour: its own sweep, with no member
	// either until bob joins, would otherwise drop the room before A's
	// mark, and bob's join would find none.
	b := New()
	hb := st.Start(t, b, map[string]any{"resume_window": "1h"})
	ha.Connect("a1", "alice")
	hb.Connect("b1", "bob")
	s := subscribeOn(t, ha, "subscribe", "a1", map[string]any{"index": "i", "collection": "c"})
	sb := subscribeOn(t, hb, "join", "b1", map[string]any{"roomId": s.RoomID})
	require.Equal(t, s.Channel, sb.Channel, "same room, same options: one channel on every node")
	waitFor(t, "both nodes count two connections", func() bool { return a.roomCount(s.RoomID) == 2 && b.roomCount(s.RoomID) == 2 })
	res, err := ha.Call("count", sdktest.Backend(), map[string]any{"roomId": s.RoomID})
	require.NoError(t, err)
	require.JSONEq(t, `{"count":2}`, string(res))

	_, err = ha.Call("unsubscribe", ha.Client("a1"), map[string]any{"roomId": s.RoomID})
	require.NoError(t, err)
	require.True(t, a.hasChannel(s.Channel), "bob on node B still holds the channel")
	require.Len(t, stateKeys(st, roomPrefix), 1)
	waitFor(t, "B counts one", func() bool { return b.roomCount(s.RoomID) == 1 })

	// A write on A still reaches B's subscriber's channel.
	_, err = ha.Call("create", sdktest.Backend(), map[string]any{"index": "i", "collection": "c", "_id": "d1", "body": map[string]any{"x": 1}})
	require.NoError(t, err)
	require.Len(t, on(ha, s.Channel), 1)

	_, err = hb.Call("unsubscribe", hb.Client("b1"), map[string]any{"roomId": s.RoomID})
	require.NoError(t, err)
	waitFor(t, "the room is dropped everywhere", func() bool {
		return len(stateKeys(st, roomPrefix)) == 0 && !a.hasChannel(s.Channel) && !b.hasChannel(s.Channel)
	})
	require.Empty(t, stateKeys(st, memberPrefix))
}

// TestClusterSameFilterOneGeneration: two nodes subscribing the same filter
// at once agree on the room's generation (Create has one winner), so their
// subscribers share one channel.
func TestClusterSameFilterOneGeneration(t *testing.T) {
	st := sdktest.NewState()
	a := New()
	ha := st.Start(t, a, map[string]any{})
	b := New()
	hb := st.Start(t, b, map[string]any{})
	for i := range 10 {
		ca, cb := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		ha.Connect(ca, "alice")
		hb.Connect(cb, "bob")
		params := map[string]any{"index": "i", "collection": "c", "body": map[string]any{"equals": map[string]any{"n": i}}}
		var sa, sb subscribed
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); sa = subscribeOn(t, ha, "subscribe", ca, params) }()
		go func() { defer wg.Done(); sb = subscribeOn(t, hb, "subscribe", cb, params) }()
		wg.Wait()
		require.Equal(t, sa.Channel, sb.Channel)
	}
}

// TestClusterConcurrentUpdatesLoseNothing: two nodes updating one document
// at once each merge into what the other wrote (compare-and-set on the
// revision): every field written is there at the end.
func TestClusterConcurrentUpdatesLoseNothing(t *testing.T) {
	st := sdktest.NewState()
	ha := st.Start(t, New(), map[string]any{})
	hb := st.Start(t, New(), map[string]any{})
	_, err := ha.Call("create", sdktest.Backend(), map[string]any{"index": "i", "collection": "c", "_id": "d", "body": map[string]any{}})
	require.NoError(t, err)
	const n = 15
	var wg sync.WaitGroup
	for i := range n {
		for name, h := range map[string]*sdktest.Harness{"a": ha, "b": hb} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := h.Call("update", sdktest.Backend(), map[string]any{"index": "i", "collection": "c", "_id": "d",
					"body": map[string]any{fmt.Sprintf("%s%d", name, i): i}})
				require.NoError(t, err)
			}()
		}
	}
	wg.Wait()
	res, err := hb.Call("get", sdktest.Backend(), map[string]any{"index": "i", "collection": "c", "_id": "d"})
	require.NoError(t, err)
	var src map[string]int
	require.NoError(t, json.Unmarshal(mustField(t, res, "_source"), &src))
	require.Len(t, src, 2*n, "an update was lost")
}

// TestClusterCreateHasOneWinner: two nodes creating one _id at once: one
// creates it, the other answers 409.
func TestClusterCreateHasOneWinner(t *testing.T) {
	st := sdktest.NewState()
	ha := st.Start(t, New(), map[string]any{})
	hb := st.Start(t, New(), map[string]any{})
	for i := range 10 {
		id := fmt.Sprintf("d%d", i)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for k, h := range []*sdktest.Harness{ha, hb} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[k] = h.Call("create", sdktest.Backend(), map[string]any{"index": "i", "collection": "c", "_id": id, "body": map[string]any{"by": k}})
			}()
		}
		wg.Wait()
		var failed []error
		for _, err := range errs {
			if err != nil {
				failed = append(failed, err)
			}
		}
		require.Len(t, failed, 1, "exactly one create of %s fails", id)
		require.Contains(t, failed[0].Error(), "already exists")
	}
}

// TestSweepYieldsToAJoiner: a node sweeping an empty channel marks it, then
// lists the members; a subscriber joining on another node between the two
// keeps the channel (its join unmarks it, and the sweep's removal fails on
// the revision), and writes keep reaching it.
func TestSweepYieldsToAJoiner(t *testing.T) {
	st := sdktest.NewState()
	a := New()
	ha := st.Start(t, a, map[string]any{"resume_window": "0s"})
	// B keeps empty channels for an hour: its own sweep, with no member
	// either until bob joins, would otherwise drop the room before A's
	// mark, and bob's join would find none.
	b := New()
	hb := st.Start(t, b, map[string]any{"resume_window": "1h"})
	ha.Connect("a1", "alice")
	hb.Connect("b1", "bob")
	s := subscribeOn(t, ha, "subscribe", "a1", map[string]any{"index": "i", "collection": "c"})
	waitFor(t, "B learns of the room", func() bool { return b.hasChannel(s.Channel) })

	var once sync.Once
	var joined subscribed
	joinedCh := make(chan struct{})
	afterMark := func() {
		once.Do(func() {
			joined = subscribeOn(t, hb, "join", "b1", map[string]any{"roomId": s.RoomID})
			close(joinedCh)
		})
	}
	a.afterMark.Store(&afterMark)
	// alice leaves: A sweeps at once (resume_window 0s), and bob joins on B
	// between its mark and its listing. The sweep may run after the
	// unsubscribe answered: wait for it.
	_, err := ha.Call("unsubscribe", ha.Client("a1"), map[string]any{"roomId": s.RoomID})
	require.NoError(t, err)
	select {
	case <-joinedCh:
	case <-time.After(30 * time.Second):
		require.FailNow(t, "A never swept the room alice left")
	}
	require.Equal(t, s.Channel, joined.Channel)

	// The channel stays in the room. A's later sweeps (it has no member
	// of its own there) may mark it again for a moment, until their own
	// listing finds bob: wait for an unmarked record rather than read one.
	var rec roomRecord
	waitFor(t, "the room's record keeps bob's channel, unmarked", func() bool {
		e := st.Entries()[roomKey(s.RoomID)]
		require.NotNil(t, e, "the room was dropped under bob")
		rec = roomRecord{}
		require.NoError(t, json.Unmarshal(e, &rec))
		require.Len(t, rec.Channels, 1)
		require.Equal(t, s.Channel, rec.Channels[0].Name)
		return !rec.Channels[0].Dropping
	})

	waitFor(t, "A sees the channel live again", func() bool {
		a.mu.RLock()
		defer a.mu.RUnlock()
		ch := a.channels[s.Channel]
		return ch != nil && !ch.dropping
	})
	_, err = ha.Call("create", sdktest.Backend(), map[string]any{"index": "i", "collection": "c", "_id": "d1", "body": map[string]any{"x": 1}})
	require.NoError(t, err)
	require.Len(t, on(ha, s.Channel), 1, "A's write reaches bob's channel")
}

// TestDeadNodeIsBuriedOnce: when a process dies (its liveness key expires),
// the survivors delete its member records; the one whose delete wins sends
// the leave notification, so it is sent once, and counts drop.
func TestDeadNodeIsBuriedOnce(t *testing.T) {
	st := newMemState()
	cfg := map[string]any{"liveness_ttl": "3s"}
	a, ha := startNode(t, st, cfg)
	b, hb := startNode(t, st, cfg)
	c, hc := startNode(t, st, cfg)
	ha.Connect("a1", "alice")
	hb.Connect("b1", "bob")
	s := subscribeOn(t, hb, "subscribe", "b1", map[string]any{"index": "i", "collection": "c", "users": "all"})
	subscribeOn(t, ha, "join", "a1", map[string]any{"roomId": s.RoomID, "users": "all", "volatile": map[string]any{"who": "alice"}})
	waitFor(t, "every node counts two", func() bool {
		return b.roomCount(s.RoomID) == 2 && c.roomCount(s.RoomID) == 2
	})

	ha.Close() // A's process dies: its records stay...
	require.NoError(t, st.Expire(nodeKey(a.node)))
	// ...until its liveness key expires.
	waitFor(t, "A's record is deleted", func() bool {
		return !slices.ContainsFunc(st.Keys(memberPrefix), func(k string) bool { return strings.HasSuffix(k, "/a1") })
	})
	waitFor(t, "B and C count one", func() bool { return b.roomCount(s.RoomID) == 1 && c.roomCount(s.RoomID) == 1 })
	outs := func() (n int) {
		for _, h := range []*sdktest.Harness{hb, hc} {
			for _, o := range on(h, s.Channel) {
				if o["user"] == "out" {
					n++
					require.JSONEq(t, `{"who":"alice"}`, mustJSON(t, o["volatile"]))
					require.JSONEq(t, `{"count":1}`, mustJSON(t, o["result"]))
				}
			}
		}
		return n
	}
	waitFor(t, "alice's leave is announced", func() bool { return outs() > 0 })
	waitFor(t, "both survivors are done with A", func() bool {
		for _, x := range []*Documents{b, c} {
			x.mu.RLock()
			n := len(x.suspects)
			x.mu.RUnlock()
			if n > 0 {
				return false
			}
		}
		return true
	})
	require.Equal(t, 1, outs(), "alice's leave is announced once")
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// TestRestartTakesOverItsRecords: a process restarted on the same node (a
// crash, then the host's replay) writes its connections' records as its
// own; the dead process's records of those connections are not counted
// twice, and are not buried under them.
func TestRestartTakesOverItsRecords(t *testing.T) {
	st := newMemState()
	cfg := map[string]any{"liveness_ttl": "3s"}
	a, ha := startNode(t, st, cfg)
	ha.Connect("a1", "alice")
	s := subscribeOn(t, ha, "subscribe", "a1", map[string]any{"index": "i", "collection": "c", "volatile": map[string]any{"v": 1}})
	ha.Close()

	a2, ha2 := startNode(t, st, cfg)
	require.Equal(t, 1, a2.roomCount(s.RoomID), "alice, from the old process's record")
	ha2.Events(sdk.Event{Kind: sdk.Reset},
		sdk.Event{Kind: sdk.Connected, ConnID: "a1", UserID: "alice", Replay: true},
		sdk.Event{Kind: sdk.Subscribed, ConnID: "a1", Channel: s.Channel, Replay: true})
	require.Equal(t, 1, a2.roomCount(s.RoomID))
	waitFor(t, "the record is the new process's", func() bool {
		e, err := st.Get(context.Background(), memberKey(s.RoomID, "a1"))
		var m memberRecord
		return err == nil && json.Unmarshal(e.Value, &m) == nil && m.Node == a2.node
	})
	require.NoError(t, st.Expire(nodeKey(a.node)))
	// The dead process is buried without touching a1's record (now the
	// new process's): a later leave finds it, and the volatile of the
	// subscribe was kept across the restart.
	waitFor(t, "the old process is buried", func() bool {
		a2.mu.RLock()
		defer a2.mu.RUnlock()
		return len(a2.suspects) == 0
	})
	require.Equal(t, 1, a2.roomCount(s.RoomID))
	require.Contains(t, st.Keys(memberPrefix), memberKey(s.RoomID, "a1"))
	a2.mu.RLock()
	require.JSONEq(t, `{"v":1}`, string(a2.rooms[s.RoomID].members["a1"].volatile))
	a2.mu.RUnlock()
}

// TestClusterDeleteHasOneWinner: two nodes deleting one document at once:
// one deletes it (and its done notification leaves once), the other
// answers 404.
func TestClusterDeleteHasOneWinner(t *testing.T) {
	st := sdktest.NewState()
	a := New()
	ha := st.Start(t, a, map[string]any{})
	hb := st.Start(t, New(), map[string]any{})
	ha.Connect("a1", "alice")
	s := subscribeOn(t, ha, "subscribe", "a1", map[string]any{"index": "i", "collection": "c"})
	for i := range 10 {
		id := fmt.Sprintf("d%d", i)
		_, err := ha.Call("create", sdktest.Backend(), map[string]any{"index": "i", "collection": "c", "_id": id, "body": map[string]any{}})
		require.NoError(t, err)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for k, h := range []*sdktest.Harness{ha, hb} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[k] = h.Call("delete", sdktest.Backend(), map[string]any{"index": "i", "collection": "c", "_id": id})
			}()
		}
		wg.Wait()
		var failed []error
		for _, err := range errs {
			if err != nil {
				failed = append(failed, err)
			}
		}
		require.Len(t, failed, 1, "exactly one delete of %s fails", id)
		require.Contains(t, failed[0].Error(), "not found")
	}
	dones := 0
	for _, h := range []*sdktest.Harness{ha, hb} {
		for _, o := range on(h, s.Channel) {
			if o["action"] == "delete" && o["state"] == "done" {
				dones++
			}
		}
	}
	require.Equal(t, 10, dones, "one done notification per deleted document")
}

// TestWriteCostIsIndependentOfRooms: a write is matched against the rooms
// in memory; its State calls are its document's (read, write), however
// many rooms it notifies, and its notifications leave in one emit per
// phase.
func TestWriteCostIsIndependentOfRooms(t *testing.T) {
	st := newMemState()
	_, h := startNode(t, st, map[string]any{})
	h.Connect("c1", "alice")
	const rooms = 40
	for i := range rooms {
		subscribeOn(t, h, "subscribe", "c1", map[string]any{"index": "i", "collection": "c", "state": "all",
			"body": map[string]any{"range": map[string]any{"n": map[string]any{"gte": i}}}})
	}
	ops := func() int { return st.Calls("doc") + st.Calls("room") + st.Calls("member") }
	before, batches := ops(), h.Batches()
	emitted := len(h.Emitted())
	_, err := h.Call("create", sdktest.Backend(), map[string]any{"index": "i", "collection": "c", "_id": "d", "body": map[string]any{"n": rooms}})
	require.NoError(t, err)
	require.Equal(t, 2, ops()-before, "one read and one write of the document")
	require.Len(t, h.Emitted(), emitted+2*rooms, "pending and done to every room")
	require.LessOrEqual(t, h.Batches()-batches, 2, "one emit per phase")
}

// TestWatchResetReloads: after a Reset (the watch fell behind), a process
// reloads rooms and members from State: a room made meanwhile appears, a
// room dropped meanwhile goes (and its subscribers on this node are
// unsubscribed from it), counts follow the records.
func TestWatchResetReloads(t *testing.T) {
	st := newMemState()
	a, ha := startNode(t, st, map[string]any{})
	ha.Connect("a1", "alice")
	kept := subscribeOn(t, ha, "subscribe", "a1", map[string]any{"index": "i", "collection": "c", "body": map[string]any{"equals": map[string]any{"k": 1}}})
	gone := subscribeOn(t, ha, "subscribe", "a1", map[string]any{"index": "i", "collection": "c", "body": map[string]any{"equals": map[string]any{"k": 2}}})
	require.Contains(t, ha.Subscriptions("a1"), gone.Channel)

	// Missed: another node made a room with a member of its own, and the
	// room "gone" was dropped (as if after a partition).
	rec := roomRecord{ID: "00000000000000aa", Index: "i", Collection: "c", Filter: json.RawMessage(`{"equals":{"k":3}}`), Generation: 7,
		Channels: []channelRecord{{Name: channelName("00000000000000aa", 7, "all", "done", "none"), Scope: "all", State: "done", Users: "none"}}}
	v, _ := json.Marshal(rec)
	st.WriteUnseen(roomKey(rec.ID), v, false)
	m, _ := json.Marshal(memberRecord{Node: "other", Conn: "b1", Channels: []string{rec.Channels[0].Name}})
	st.WriteUnseen(memberKey(rec.ID, "b1"), m, false)
	n, _ := json.Marshal(map[string]any{})
	st.WriteUnseen(nodeKey("other"), n, false)
	st.WriteUnseen(roomKey(gone.RoomID), nil, true)
	st.ResetWatchers()

	waitFor(t, "the missed room appears", func() bool { return a.roomCount(rec.ID) == 1 })
	waitFor(t, "the dropped room goes", func() bool { return !a.hasChannel(gone.Channel) })
	require.True(t, a.hasChannel(kept.Channel))
	waitFor(t, "alice is unsubscribed from the dropped room's channel", func() bool {
		return !slices.Contains(ha.Subscriptions("a1"), gone.Channel)
	})
}

// TestDeadNodeFoundWithoutExpiryEvent: a store that expires a liveness key
// without telling the watchers still has its dead process buried: every
// liveness_ttl, the processes named in member records are checked.
func TestDeadNodeFoundWithoutExpiryEvent(t *testing.T) {
	st := newMemState()
	cfg := map[string]any{"liveness_ttl": "3s"}
	a, ha := startNode(t, st, cfg)
	b, hb := startNode(t, st, cfg)
	ha.Connect("a1", "alice")
	hb.Connect("b1", "bob")
	s := subscribeOn(t, hb, "subscribe", "b1", map[string]any{"index": "i", "collection": "c"})
	subscribeOn(t, ha, "join", "a1", map[string]any{"roomId": s.RoomID})
	waitFor(t, "B counts two", func() bool { return b.roomCount(s.RoomID) == 2 })
	ha.Close()
	st.WriteUnseen(nodeKey(a.node), nil, true)
	waitFor(t, "B buries A", func() bool { return b.roomCount(s.RoomID) == 1 })
	require.NotContains(t, st.Keys(memberPrefix), memberKey(s.RoomID, "a1"))
}

// startNode runs one plugin process on st, as a node of a cluster whose
// plugins share st.
func startNode(t *testing.T, st *sdktest.MemState, cfg map[string]any) (*Documents, *sdktest.Harness) {
	t.Helper()
	d := New()
	d.stateOf = st.Handle
	return d, sdktest.Start(t, d, cfg)
}
