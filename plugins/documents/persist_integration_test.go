package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/stretchr/testify/require"
)

func TestIntegrationDataSurvivesKillAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := startStack(t, dir, "30s")
	a := s.dial("alice")
	room, ch := sub(t, a, map[string]any{"index": "i", "collection": "c", "body": map[string]any{"exists": "keep"}})
	call(t, a, "create", map[string]any{"index": "i", "collection": "c", "_id": "d1", "body": map[string]any{"keep": 1}})
	n, _ := next(t, a)
	require.Equal(t, ch, n.Channel)

	// kill -9: the documents stay, the room is served again on the same
	// channel, and its subscriber is counted from the host's replay.
	s.kill9()
	require.Equal(t, "d1", call(t, a, "get", map[string]any{"index": "i", "collection": "c", "_id": "d1"})["_id"])
	call(t, a, "create", map[string]any{"index": "i", "collection": "c", "_id": "d2", "body": map[string]any{"keep": 2}})
	n, o := next(t, a)
	require.Equal(t, ch, n.Channel)
	require.Equal(t, "d2", o["result"].(map[string]any)["_id"])
	deadline := time.Now().Add(heraldtest.Timeout)
	for call(t, a, "count", map[string]any{"roomId": room})["count"] != 1.0 {
		require.True(t, time.Now().Before(deadline), "the replay never counted alice")
		time.Sleep(20 * time.Millisecond)
	}

	// herald restart: the documents stay.
	s.Stop(t)
	s = startStack(t, dir, "30s")
	b := s.dial("bob")
	res := call(t, b, "get", map[string]any{"index": "i", "collection": "c", "_id": "d2"})
	require.Equal(t, map[string]any{"keep": 2.0}, res["_source"])
	require.Equal(t, "alice", res["_meta"].(map[string]any)["author"])
	require.Equal(t, 2.0, call(t, b, "count", map[string]any{"index": "i", "collection": "c"})["count"])
}

func TestIntegrationOperators(t *testing.T) {
	s := startStack(t, t.TempDir(), "0s")
	c := s.dial("alice")
	w := s.dial("writer")
	for i, tc := range []struct {
		name            string
		filter          string
		match, mismatch string
	}{
		{"equals", `{"equals":{"city":"Paris"}}`, `{"city":"Paris"}`, `{"city":"Lyon"}`},
		{"in", `{"in":{"city":["Paris","Lyon"]}}`, `{"city":"Lyon"}`, `{"city":"Nice"}`},
		{"exists", `{"exists":"a.b"}`, `{"a":{"b":null}}`, `{"a":{"c":1}}`},
		{"exists array value", `{"exists":"tags[\"x\"]"}`, `{"tags":["y","x"]}`, `{"tags":["y"]}`},
		{"missing", `{"missing":"a"}`, `{"b":1}`, `{"a":1}`},
		{"range", `{"range":{"age":{"gte":18,"lt":65}}}`, `{"age":18}`, `{"age":65}`},
		{"regexp", `{"regexp":{"name":{"value":"^AB","flags":"i"}}}`, `{"name":"abc"}`, `{"name":"cab"}`},
		{"geoBoundingBox", `{"geoBoundingBox":{"loc":{"top":43.7,"left":3.8,"bottom":43.5,"right":4.0}}}`, `{"loc":{"lat":43.6,"lon":3.9}}`, `{"loc":{"lat":48.8,"lon":2.3}}`},
		{"geoDistance", `{"geoDistance":{"loc":{"lat":43.6,"lon":3.9},"distance":"10km"}}`, `{"loc":[43.61,3.91]}`, `{"loc":[48.8,2.3]}`},
		{"geoDistanceRange", `{"geoDistanceRange":{"loc":"43.6, 3.9","from":"1km","to":"100km"}}`, `{"loc":{"lat":43.9,"lon":3.9}}`, `{"loc":{"lat":43.6,"lon":3.9}}`},
		{"geoPolygon", `{"geoPolygon":{"loc":{"points":[[43,3],[44,3],[44,5],[43,5]]}}}`, `{"loc":[43.5,4]}`, `{"loc":[45,4]}`},
		{"match", `{"match":{"user":{"roles":["admin"]}}}`, `{"user":{"roles":["dev","admin"],"n":1}}`, `{"user":{"roles":["dev"]}}`},
		{"select", `{"select":{"field":"tags","index":-1,"query":{"equals":{"value":"x"}}}}`, `{"tags":["a","x"]}`, `{"tags":["x","a"]}`},
		{"and", `{"and":[{"equals":{"a":1}},{"equals":{"b":2}}]}`, `{"a":1,"b":2}`, `{"a":1,"b":3}`},
		{"or", `{"or":[{"equals":{"a":1}},{"equals":{"b":2}}]}`, `{"b":2}`, `{"a":2,"b":3}`},
		{"not", `{"not":{"equals":{"a":1}}}`, `{"a":2}`, `{"a":1}`},
		{"bool", `{"bool":{"must":[{"equals":{"a":1}}],"must_not":[{"equals":{"b":1}}],"should":[{"equals":{"c":1}},{"equals":{"c":2}}]}}`, `{"a":1,"b":2,"c":2}`, `{"a":1,"b":1,"c":2}`},
		{"nothing", `{"nothing":true}`, ``, `{"a":1}`},
		{"ids", `{"ids":{"values":["id1","id2"]}}`, `id2`, `id3`},
		{"everything", `{}`, `{"z":1}`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			coll := fmt.Sprintf("op%d", i)
			_, ch := sub(t, c, map[string]any{"index": "ops", "collection": coll, "body": json.RawMessage(tc.filter)})
			// Sentinel room: everything of the collection.
			sub(t, c, map[string]any{"index": "ops", "collection": coll, "body": map[string]any{"equals": map[string]any{"sentinel": true}}})
			send := func(doc string) {
				if tc.name == "ids" {
					call(t, w, "create", map[string]any{"index": "ops", "collection": coll, "_id": doc, "body": map[string]any{}})
					return
				}
				call(t, w, "publish", map[string]any{"index": "ops", "collection": coll, "body": json.RawMessage(doc)})
			}
			if tc.mismatch != "" {
				send(tc.mismatch)
			}
			if tc.match != "" {
				send(tc.match)
			}
			call(t, w, "publish", map[string]any{"index": "ops", "collection": coll, "body": map[string]any{"sentinel": true}})
			// Filters that the sentinel matches too get it on both channels
			// (one emit, in either order).
			sentinels := 1
			if tc.name == "missing" || tc.name == "not" || tc.name == "everything" {
				sentinels = 2
			}
			var got []string
			for sentinels > 0 {
				n, o := next(t, c)
				r := o["result"].(map[string]any)
				if src, _ := r["_source"].(map[string]any); src["sentinel"] == true {
					sentinels--
					continue
				}
				require.Equal(t, ch, n.Channel)
				if tc.name == "ids" {
					got = append(got, r["_id"].(string))
				} else {
					b, _ := json.Marshal(r["_source"])
					got = append(got, string(b))
				}
			}
			if tc.match == "" {
				require.Empty(t, got)
			} else {
				want := tc.match
				if tc.name != "ids" {
					var v any
					_ = json.Unmarshal([]byte(tc.match), &v)
					b, _ := json.Marshal(v)
					want = string(b)
				}
				require.Equal(t, []string{want}, got, "the matching document only")
			}
		})
	}
}

// TestIntegrationReplyBeforeFirstNotification subscribes many channels at
// once while writers flood the collection, reading the raw frames in the
// order the server wrote them: no notification of a channel may come
// before the reply that names it.
func TestIntegrationReplyBeforeFirstNotification(t *testing.T) {
	s := startStack(t, t.TempDir(), "30s")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				st, b := s.Do(t, http.MethodPost, "/v1/plugins/documents/publish",
					map[string]any{"index": "storm", "collection": "c", "body": map[string]any{"n": k % 100}}, heraldtest.APIKey, nil)
				if st != http.StatusOK {
					t.Errorf("publish: %d %s", st, b)
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	ws, _, err := websocket.DefaultDialer.Dial(s.WSURL+"?token="+url.QueryEscape(heraldtest.MintToken(t, "alice", time.Hour, nil)), nil)
	require.NoError(t, err)
	defer ws.Close()
	const subs = 30
	for i := range subs {
		req := map[string]any{"jsonrpc": "2.0", "id": i, "method": "documents.subscribe", "params": map[string]any{
			"index": "storm", "collection": "c", "body": map[string]any{"range": map[string]any{"n": map[string]any{"gte": i % 10}}},
			"scope": []string{"all", "in", "out"}[i/10],
		}}
		b, _ := json.Marshal(req)
		require.NoError(t, ws.WriteMessage(websocket.TextMessage, b))
	}
	type msg struct {
		ID     *int            `json:"id"`
		Method string          `json:"method"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
		Params struct {
			Notifications []heraldtest.Notification `json:"notifications"`
		} `json:"params"`
	}
	known := map[string]bool{}
	got := map[string]int{}
	last := map[string]uint64{} // the answer's seq, then the last received
	replies := 0
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(heraldtest.Timeout)))
	for replies < subs || len(got) < subs {
		_, frame, err := ws.ReadMessage()
		require.NoError(t, err, "replies %d, channels notified %d", replies, len(got))
		var ms []msg
		if frame[0] == '[' {
			require.NoError(t, json.Unmarshal(frame, &ms))
		} else {
			var m msg
			require.NoError(t, json.Unmarshal(frame, &m))
			ms = []msg{m}
		}
		for _, m := range ms {
			if m.Method == "onNotificationReceived" {
				for _, n := range m.Params.Notifications {
					require.True(t, known[n.Channel], "notification of %s before the reply naming it", n.Channel)
					require.Equal(t, last[n.Channel]+1, n.Seq, "%s: from the answer's seq on, gaplessly", n.Channel)
					last[n.Channel] = n.Seq
					got[n.Channel]++
				}
				continue
			}
			require.Nil(t, m.Error, "%s", m.Error)
			var r struct {
				Channel string
				Seq     uint64
			}
			require.NoError(t, json.Unmarshal(m.Result, &r))
			last[r.Channel] = r.Seq
			// scope out channels of a publish stream get nothing: count
			// them as notified.
			known[r.Channel] = true
			if *m.ID >= 20 {
				got[r.Channel] = max(got[r.Channel], 1)
			}
			replies++
		}
	}
}
