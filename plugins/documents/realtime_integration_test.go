package main

import (
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/stretchr/testify/require"
)

func TestIntegrationDocumentNotifications(t *testing.T) {
	s := startStack(t, t.TempDir(), "30s")
	c := s.dial("alice")
	w := s.dial("writer")
	room, ch := sub(t, c, map[string]any{"index": "foo", "collection": "bar", "body": map[string]any{}})
	_, chAll := sub(t, c, map[string]any{"index": "foo", "collection": "bar", "body": map[string]any{}, "state": "all"})
	room2, chPending := sub(t, c, map[string]any{"index": "foo", "collection": "bar", "state": "pending"})
	require.Equal(t, room, room2, "no body and an empty body are the same filter")
	require.NotEqual(t, ch, chAll)
	require.NotEqual(t, chAll, chPending)

	before := time.Now().UnixMilli()
	vol := map[string]any{"why": "test"}
	call(t, w, "create", map[string]any{"index": "foo", "collection": "bar", "_id": "d1", "body": map[string]any{"some": "document content"}, "volatile": vol})

	// pending first (state all and pending), then done (state all and done).
	ns := c.Notifications(t, 4)
	got := map[string][]string{}
	for _, n := range ns {
		o := obj(t, n)
		got[n.Channel] = append(got[n.Channel], o["state"].(string))
		require.ElementsMatch(t, docKeys, keys(o), "%s", n.Object)
		require.Equal(t, n.Channel, o["room"])
		require.Equal(t, "create", n.Event)
		require.Equal(t, "document", n.ObjectType)
		require.Equal(t, 200.0, o["status"])
		require.Equal(t, "foo", o["index"])
		require.Equal(t, "bar", o["collection"])
		require.Equal(t, "document", o["controller"])
		require.Equal(t, "create", o["action"])
		require.Equal(t, "websocket", o["protocol"])
		require.GreaterOrEqual(t, o["timestamp"].(float64), float64(before))
		require.Equal(t, vol, o["volatile"])
		require.Equal(t, "in", o["scope"])
		require.Equal(t, "document", o["type"])
		r := o["result"].(map[string]any)
		require.Equal(t, map[string]any{"some": "document content"}, r["_source"])
		if o["state"] == "pending" {
			require.Equal(t, "d1", r["_id"])
			require.Nil(t, r["_meta"], "nothing exists yet")
		} else {
			require.Equal(t, "d1", r["_id"])
			require.Equal(t, "writer", r["_meta"].(map[string]any)["author"])
		}
	}
	require.Equal(t, []string{"pending", "done"}, got[chAll], "pending before done")
	require.Equal(t, []string{"done"}, got[ch])
	require.Equal(t, []string{"pending"}, got[chPending])
	var first, last heraldtest.Notification = ns[0], ns[3]
	require.Equal(t, "pending", obj(t, first)["state"])
	require.Equal(t, "done", obj(t, last)["state"])

	// delete: pending and done, scope out, no _source.
	call(t, w, "delete", map[string]any{"index": "foo", "collection": "bar", "_id": "d1"})
	ns = c.Notifications(t, 4)
	got = map[string][]string{}
	for _, n := range ns {
		o := obj(t, n)
		got[n.Channel] = append(got[n.Channel], o["state"].(string))
		require.Equal(t, "delete", n.Event)
		require.Equal(t, "out", o["scope"])
		require.Nil(t, o["volatile"])
		r := o["result"].(map[string]any)
		require.Equal(t, "d1", r["_id"])
		_, has := r["_source"]
		require.False(t, has, "no _source on a delete: %s", n.Object)
		if o["state"] == "done" {
			m := r["_meta"].(map[string]any)
			require.Equal(t, false, m["active"])
			require.NotNil(t, m["deletedAt"])
		}
	}
	require.Equal(t, []string{"pending", "done"}, got[chAll])
	require.Equal(t, []string{"done"}, got[ch])
	require.Equal(t, []string{"pending"}, got[chPending])

	// a realtime message: controller realtime, _id null, scope in, done.
	call(t, w, "publish", map[string]any{"index": "foo", "collection": "bar", "body": map[string]any{"foo": "bar"}})
	ns = c.Notifications(t, 2)
	for _, n := range ns {
		o := obj(t, n)
		require.Contains(t, []string{ch, chAll}, n.Channel)
		require.Equal(t, "publish", n.Event)
		require.Equal(t, "realtime", o["controller"])
		require.Equal(t, "done", o["state"])
		require.Equal(t, "in", o["scope"])
		r := o["result"].(map[string]any)
		require.Nil(t, r["_id"])
		require.Equal(t, map[string]any{"foo": "bar"}, r["_source"])
		require.Equal(t, "writer", r["_meta"].(map[string]any)["author"])
	}

	// Other collections and indexes are not this room's.
	call(t, w, "publish", map[string]any{"index": "foo", "collection": "other", "body": map[string]any{"foo": "bar"}})
	call(t, w, "publish", map[string]any{"index": "foo2", "collection": "bar", "body": map[string]any{"foo": "bar"}})
	call(t, w, "publish", map[string]any{"index": "foo", "collection": "bar", "body": map[string]any{"last": true}})
	ns = c.Notifications(t, 2)
	for _, n := range ns {
		require.Equal(t, map[string]any{"last": true}, obj(t, n)["result"].(map[string]any)["_source"])
	}
}

func TestIntegrationEqualFiltersShareARoom(t *testing.T) {
	s := startStack(t, t.TempDir(), "30s")
	c := s.dial("alice")
	a := map[string]any{"equals": map[string]any{"city": "Paris"}}
	b := map[string]any{"range": map[string]any{"age": map[string]any{"gte": 18}}}
	room, ch := sub(t, c, map[string]any{"index": "i", "collection": "c", "body": map[string]any{"and": []any{a, b}}})
	for _, f := range []any{
		map[string]any{"and": []any{b, a}},
		map[string]any{"bool": map[string]any{"must": []any{a, b}}},
		map[string]any{"and": []any{a, map[string]any{"and": []any{b}}}},
		map[string]any{"not": map[string]any{"or": []any{map[string]any{"not": a}, map[string]any{"not": b}}}},
	} {
		r, ch2 := sub(t, c, map[string]any{"index": "i", "collection": "c", "body": f})
		require.Equal(t, room, r, "%v", f)
		require.Equal(t, ch, ch2, "same options, same channel: %v", f)
	}
	// Same filter elsewhere, or another filter: another room.
	r, _ := sub(t, c, map[string]any{"index": "i", "collection": "other", "body": map[string]any{"and": []any{a, b}}})
	require.NotEqual(t, room, r)
	r, _ = sub(t, c, map[string]any{"index": "i", "collection": "c", "body": a})
	require.NotEqual(t, room, r)
	// One connection, one count, however many ways it subscribed.
	require.Equal(t, 1.0, call(t, c, "count", map[string]any{"roomId": room})["count"])
}

func TestIntegrationScopeTransitions(t *testing.T) {
	s := startStack(t, t.TempDir(), "30s")
	c := s.dial("alice")
	w := s.dial("writer")
	cheap := map[string]any{"range": map[string]any{"price": map[string]any{"lt": 10}}}
	dear := map[string]any{"range": map[string]any{"price": map[string]any{"gte": 10}}}
	_, chCheap := sub(t, c, map[string]any{"index": "shop", "collection": "items", "body": cheap})
	_, chDear := sub(t, c, map[string]any{"index": "shop", "collection": "items", "body": dear})
	_, chCheapIn := sub(t, c, map[string]any{"index": "shop", "collection": "items", "body": cheap, "scope": "in"})
	_, chCheapOut := sub(t, c, map[string]any{"index": "shop", "collection": "items", "body": cheap, "scope": "out"})
	_, chCheapNone := sub(t, c, map[string]any{"index": "shop", "collection": "items", "body": cheap, "scope": "none"})
	wr := func(action string, body map[string]any) {
		call(t, w, action, map[string]any{"index": "shop", "collection": "items", "_id": "x", "body": body})
	}

	// created cheap: in for the cheap channels that want in.
	wr("create", map[string]any{"price": 5, "name": "pen"})
	ns := c.Notifications(t, 2)
	seen := map[string]string{}
	for _, n := range ns {
		seen[n.Channel] = obj(t, n)["scope"].(string)
	}
	require.Equal(t, map[string]string{chCheap: "in", chCheapIn: "in"}, seen)

	// still cheap after an update: in again (it matches after).
	wr("update", map[string]any{"name": "blue pen"})
	ns = c.Notifications(t, 2)
	seen = map[string]string{}
	for _, n := range ns {
		o := obj(t, n)
		seen[n.Channel] = o["scope"].(string)
		require.Equal(t, "update", n.Event)
		require.Equal(t, "done", o["state"])
		require.Equal(t, map[string]any{"price": 5.0, "name": "blue pen"}, o["result"].(map[string]any)["_source"])
	}
	require.Equal(t, map[string]string{chCheap: "in", chCheapIn: "in"}, seen)

	// one update moves it from cheap to dear: out of one room, into the
	// other, in the same emit.
	wr("update", map[string]any{"price": 50})
	ns = c.Notifications(t, 3)
	seen = map[string]string{}
	for _, n := range ns {
		seen[n.Channel] = obj(t, n)["scope"].(string)
	}
	require.Equal(t, map[string]string{chCheap: "out", chCheapOut: "out", chDear: "in"}, seen)

	// a replace back to cheap.
	wr("replace", map[string]any{"price": 1})
	ns = c.Notifications(t, 3)
	seen = map[string]string{}
	for _, n := range ns {
		seen[n.Channel] = obj(t, n)["scope"].(string)
		require.Equal(t, "replace", n.Event)
	}
	require.Equal(t, map[string]string{chCheap: "in", chCheapIn: "in", chDear: "out"}, seen)

	// createOrReplace on an existing document reports a replace.
	wr("createOrReplace", map[string]any{"price": 2})
	ns = c.Notifications(t, 2)
	for _, n := range ns {
		require.Equal(t, "replace", n.Event)
		require.Equal(t, "replace", obj(t, n)["action"])
	}

	// a document that matches neither before nor after gives nothing; the
	// next notification is the publish after it.
	call(t, w, "create", map[string]any{"index": "shop", "collection": "items", "_id": "y", "body": map[string]any{"name": "no price"}})
	call(t, w, "update", map[string]any{"index": "shop", "collection": "items", "_id": "y", "body": map[string]any{"color": "red"}})
	call(t, w, "publish", map[string]any{"index": "shop", "collection": "items", "body": map[string]any{"price": 20}})
	n := c.Notifications(t, 1)[0]
	require.Equal(t, chDear, n.Channel)
	require.Equal(t, "publish", n.Event)
	require.NotEqual(t, chCheapNone, n.Channel, "scope none gets no document notification")
}

func TestIntegrationUserNotifications(t *testing.T) {
	s := startStack(t, t.TempDir(), "30s")
	a := s.dial("alice")
	filter := map[string]any{"equals": map[string]any{"team": "blue"}}
	room, chA := sub(t, a, map[string]any{"index": "i", "collection": "c", "body": filter, "users": "all", "volatile": map[string]any{"name": "alice"}})
	// alice learns of herself: in, count 1.
	n, o := next(t, a)
	require.Equal(t, chA, n.Channel)
	require.Equal(t, "subscribe", n.Event)
	require.Equal(t, "user", n.ObjectType)
	require.ElementsMatch(t, userKeys, keys(o), "%s", n.Object)
	require.Equal(t, map[string]any{
		"status": 200.0, "error": nil, "index": "i", "collection": "c", "controller": "realtime", "action": "subscribe",
		"protocol": "websocket", "timestamp": o["timestamp"], "volatile": map[string]any{"name": "alice"}, "user": "in",
		"result": map[string]any{"count": 1.0}, "room": chA, "type": "user",
	}, o)

	// bob joins by roomId, users none: alice is told, count 2.
	b := s.dial("bob")
	// (Kuzzle's form: roomId in the body.)
	res := call(t, b, "join", map[string]any{"body": map[string]any{"roomId": room}, "volatile": map[string]any{"name": "bob"}})
	require.Equal(t, room, res["roomId"])
	chB := res["channel"].(string)
	require.NotEqual(t, chA, chB)
	_, o = next(t, a)
	require.Equal(t, "in", o["user"])
	require.Equal(t, map[string]any{"count": 2.0}, o["result"])
	require.Equal(t, map[string]any{"name": "bob"}, o["volatile"])
	require.Equal(t, 2.0, call(t, a, "count", map[string]any{"roomId": room})["count"])
	require.Equal(t, 2.0, call(t, a, "count", map[string]any{"body": map[string]any{"roomId": room}})["count"])

	// carol subscribes the same filter written differently, users out.
	cc := s.dial("carol")
	room3, chC := sub(t, cc, map[string]any{"index": "i", "collection": "c", "body": map[string]any{"and": []any{filter}}, "users": "out", "volatile": map[string]any{"name": "carol"}})
	require.Equal(t, room, room3)
	_, o = next(t, a)
	require.Equal(t, map[string]any{"count": 3.0}, o["result"])

	// dave watches joins only (users in).
	dv := s.dial("dave")
	_, chD := sub(t, dv, map[string]any{"index": "i", "collection": "c", "body": filter, "users": "in"})
	n, o = next(t, dv)
	require.Equal(t, chD, n.Channel)
	require.Equal(t, "in", o["user"])
	require.Equal(t, map[string]any{"count": 4.0}, o["result"])
	_, o = next(t, a)
	require.Equal(t, map[string]any{"count": 4.0}, o["result"])

	// bob (users none) got no user notification at all: his first is a document.
	w := s.dial("writer")
	call(t, w, "publish", map[string]any{"index": "i", "collection": "c", "body": map[string]any{"team": "blue"}})
	n, _ = next(t, b)
	require.Equal(t, "publish", n.Event)
	for _, c := range []*heraldtest.Client{a, cc, dv} {
		n, _ = next(t, c)
		require.Equal(t, "publish", n.Event)
	}

	// dave leaves: counts go back to 3 (dave's channel asks for no out).
	call(t, dv, "unsubscribe", map[string]any{"roomId": room})
	_, o = next(t, a)
	require.Equal(t, "out", o["user"])
	require.Equal(t, map[string]any{"count": 3.0}, o["result"])
	_, o = next(t, cc)
	require.Equal(t, "out", o["user"])

	// bob unsubscribes: alice and carol are told, count 2, bob's volatile.
	res = call(t, b, "unsubscribe", map[string]any{"body": map[string]any{"roomId": room}})
	require.Equal(t, map[string]any{"roomId": room}, res)
	_, o = next(t, a)
	require.Equal(t, "out", o["user"])
	require.Equal(t, "unsubscribe", o["action"])
	require.Equal(t, map[string]any{"count": 2.0}, o["result"])
	require.Equal(t, map[string]any{"name": "bob"}, o["volatile"])
	n, o = next(t, cc)
	require.Equal(t, chC, n.Channel)
	require.Equal(t, "out", o["user"])
	require.Equal(t, 2.0, call(t, a, "count", map[string]any{"roomId": room})["count"])
	e := b.CallErr(t, "documents.unsubscribe", map[string]any{"roomId": room})
	require.Equal(t, -32602, e.Code)

	// carol disconnects: alice is told, count 1.
	cc.Close()
	_, o = next(t, a)
	require.Equal(t, "out", o["user"])
	require.Equal(t, "unsubscribe", o["action"])
	require.Equal(t, map[string]any{"count": 1.0}, o["result"])
	require.Equal(t, map[string]any{"name": "carol"}, o["volatile"])
	require.Equal(t, 1.0, call(t, a, "count", map[string]any{"roomId": room})["count"])

	// a second channel of the same connection in the room does not count twice.
	sub(t, a, map[string]any{"index": "i", "collection": "c", "body": filter, "scope": "in"})
	require.Equal(t, 1.0, call(t, a, "count", map[string]any{"roomId": room})["count"])

	// list: {index: {collection: {roomId: count}}}.
	l := call(t, a, "list", nil)
	require.Equal(t, map[string]any{"i": map[string]any{"c": map[string]any{room: 1.0}}}, l)
}

func TestIntegrationRoomsDroppedWhenEmpty(t *testing.T) {
	s := startStack(t, t.TempDir(), "0s")
	a := s.dial("alice")
	b := s.dial("bob")
	room, _ := sub(t, a, map[string]any{"index": "i", "collection": "c", "body": map[string]any{"exists": "x"}})
	room2, _ := sub(t, b, map[string]any{"index": "i", "collection": "c", "body": map[string]any{"exists": "y"}})
	call(t, a, "unsubscribe", map[string]any{"roomId": room})
	require.Equal(t, map[string]any{"i": map[string]any{"c": map[string]any{room2: 1.0}}}, call(t, a, "list", nil))
	e := a.CallErr(t, "documents.count", map[string]any{"roomId": room})
	require.Contains(t, string(e.Data), `"status":404`)
	e = a.CallErr(t, "documents.join", map[string]any{"roomId": room})
	require.Contains(t, string(e.Data), `"status":404`)

	// a disconnect empties the last room: nothing is left.
	b.Close()
	deadline := time.Now().Add(heraldtest.Timeout)
	for {
		l := call(t, a, "list", nil)
		if len(l) == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "room never dropped: %v", l)
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIntegrationResumeWithSince(t *testing.T) {
	s := startStack(t, t.TempDir(), "30s")
	w := s.dial("writer")
	a := s.dial("alice")
	params := map[string]any{"index": "i", "collection": "c", "body": map[string]any{"equals": map[string]any{"k": "v"}}}
	res := call(t, a, "subscribe", params)
	ch := res["channel"].(string)
	call(t, w, "publish", map[string]any{"index": "i", "collection": "c", "body": map[string]any{"k": "v", "n": 1}})
	n, _ := next(t, a)
	require.Equal(t, uint64(1), n.Seq)
	epoch := res["epoch"].(string)
	a.Close()

	// Missed while away: two notifications.
	call(t, w, "publish", map[string]any{"index": "i", "collection": "c", "body": map[string]any{"k": "v", "n": 2}})
	call(t, w, "publish", map[string]any{"index": "i", "collection": "c", "body": map[string]any{"k": "v", "n": 3}})

	a2 := s.dial("alice")
	p := map[string]any{"since": map[string]any{"channel": ch, "seq": n.Seq, "epoch": epoch}}
	for k, v := range params {
		p[k] = v
	}
	res = call(t, a2, "subscribe", p)
	require.Equal(t, ch, res["channel"])
	require.Equal(t, true, res["recovered"])
	ns := a2.Notifications(t, 2)
	for i, n := range ns {
		require.Equal(t, uint64(i+2), n.Seq)
		require.Equal(t, float64(i+2), obj(t, n)["result"].(map[string]any)["_source"].(map[string]any)["n"])
	}
	call(t, w, "publish", map[string]any{"index": "i", "collection": "c", "body": map[string]any{"k": "v", "n": 4}})
	require.Equal(t, uint64(4), a2.Notifications(t, 1)[0].Seq)

	// A since of another channel (other options) cannot be recovered.
	p["scope"] = "in"
	res = call(t, a2, "subscribe", p)
	require.NotEqual(t, ch, res["channel"])
	require.Equal(t, false, res["recovered"])
}
