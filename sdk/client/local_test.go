package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// fakeHerald answers hello and subscribe like herald and lets a test script
// what it sends: enough to check the client's side of the protocol without
// the real server (the integration tests use that).
type fakeHerald struct {
	srv    *httptest.Server
	hello  chan map[string]any
	conns  chan *websocket.Conn
	frames chan map[string]any // client frames other than hello/subscribe
	subs   chan map[string]any // subscribe params
	subSeq uint64
	// refuse lists the channels a re-subscribe (one with since) is refused
	// for: the first one still asked for, one per subscribe, as a plugin
	// that changed its mind between two calls would.
	refuse []string
	// script, when set, answers each subscribe with since first: the
	// refusals it returns ({channel, code, reason}) refuse the subscribe,
	// none lets it through. conn counts the connections from 1.
	script func(conn int, channels []any, since map[string]any) []map[string]any
	nconns atomic.Int32
	wmu    sync.Mutex // gorilla allows one writer at a time
	mu     sync.Mutex // refuse
}

func (f *fakeHerald) write(t *testing.T, ws *websocket.Conn, v any) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	_ = ws.WriteJSON(v) // a closed test server is not a failure
}

func startFake(t *testing.T) *fakeHerald {
	f := &fakeHerald{hello: make(chan map[string]any, 4), conns: make(chan *websocket.Conn, 4), frames: make(chan map[string]any, 100), subs: make(chan map[string]any, 100), subSeq: 5}
	up := websocket.Upgrader{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		conn := int(f.nconns.Add(1))
		sent := false
		for {
			var m map[string]any
			if err := ws.ReadJSON(&m); err != nil {
				return
			}
			switch m["method"] {
			case "hello":
				f.hello <- m["params"].(map[string]any)
				f.write(t, ws, map[string]any{"jsonrpc": "2.0", "id": m["id"], "result": map[string]any{"session_id": "x", "user_id": "u"}})
				if !sent {
					f.conns <- ws
					sent = true
				}
			case "subscribe":
				f.subscribe(t, ws, m, conn)
			default:
				f.frames <- m
			}
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// subscribe answers a subscribe of "channels": all or nothing, as herald.
// A channel with since resumes where it says (recovered: true); a new one
// starts at subSeq.
func (f *fakeHerald) subscribe(t *testing.T, ws *websocket.Conn, m map[string]any, conn int) {
	params, _ := m["params"].(map[string]any)
	f.subs <- params
	var channels []any
	if cs, ok := params["channels"].([]any); ok {
		channels = cs
	} else {
		channels = []any{"news"}
	}
	since, _ := params["since"].(map[string]any)
	if since != nil && f.script != nil {
		if refusals := f.script(conn, channels, since); len(refusals) > 0 {
			f.write(t, ws, map[string]any{"jsonrpc": "2.0", "id": m["id"], "error": map[string]any{
				"code": refusals[0]["code"], "message": "subscribe refused, nothing was subscribed", "data": map[string]any{"channels": refusals}}})
			return
		}
	}
	f.mu.Lock()
	if since != nil {
		for _, ch := range channels {
			if len(f.refuse) > 0 && ch == f.refuse[0] {
				f.refuse = f.refuse[1:]
				f.mu.Unlock()
				refusal := map[string]any{"channel": ch, "code": CodeForbidden, "reason": "not any more"}
				f.write(t, ws, map[string]any{"jsonrpc": "2.0", "id": m["id"], "error": map[string]any{
					"code": CodeForbidden, "message": "subscribe refused, nothing was subscribed", "data": map[string]any{"channels": []any{refusal}}}})
				return
			}
		}
	}
	f.mu.Unlock()
	var subs []map[string]any
	for _, ch := range channels {
		if pos, ok := since[ch.(string)].(map[string]any); ok {
			subs = append(subs, map[string]any{"channel": ch, "seq": pos["seq"], "epoch": pos["epoch"], "recovered": true})
		} else {
			subs = append(subs, map[string]any{"channel": ch, "seq": f.subSeq, "epoch": "e1"})
		}
	}
	f.write(t, ws, map[string]any{"jsonrpc": "2.0", "id": m["id"], "result": map[string]any{"subscriptions": subs}})
}

func (f *fakeHerald) url() string { return "ws" + strings.TrimPrefix(f.srv.URL, "http") }

type testLocal struct {
	batches chan []Notification
	calls   atomic.Int32
}

func (l *testLocal) OnNotificationReceived(_ context.Context, b Batch) error {
	l.batches <- b.Notifications
	return nil
}

func (l *testLocal) Confirm(_ context.Context, p struct{ Room string }) (map[string]string, error) {
	l.calls.Add(1)
	return map[string]string{"room": p.Room}, nil
}

func (l *testLocal) Fail(context.Context) error {
	l.calls.Add(1)
	return fmt.Errorf("no such room")
}

func (l *testLocal) String() string { return "not for herald" }

func next[T any](t *testing.T, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
	}
	var zero T
	return zero
}

func TestHelloPresentsTheLocalInterfaceAndNothingElse(t *testing.T) {
	f := startFake(t)
	l := &testLocal{batches: make(chan []Notification, 10)}
	c, err := Dial(context.Background(), f.url(), Options{Local: l, Client: Info{Name: "t", Version: "1"}})
	require.NoError(t, err)
	defer c.Close()
	hello := next(t, f.hello)
	require.Equal(t, []any{"confirm", "fail", "onNotificationReceived"}, hello["methods"])
	require.Equal(t, map[string]any{"name": "t", "version": "1"}, hello["client"])
}

func TestServerCallsGetResultsErrorsAndMethodNotFound(t *testing.T) {
	f := startFake(t)
	l := &testLocal{batches: make(chan []Notification, 10)}
	c, err := Dial(context.Background(), f.url(), Options{Local: l})
	require.NoError(t, err)
	defer c.Close()
	ws := next(t, f.conns)
	send := func(id, method string, params any) map[string]any {
		f.write(t, ws, map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
		return next(t, f.frames)
	}
	r := send("s1", "confirm", map[string]any{"room": "x"})
	require.Equal(t, "s1", r["id"])
	require.Equal(t, map[string]any{"room": "x"}, r["result"])

	r = send("s2", "fail", nil)
	require.Equal(t, map[string]any{"code": float64(CodeApplication), "message": "no such room"}, r["error"])

	r = send("s3", "launchMissiles", nil)
	require.Equal(t, float64(CodeMethodNotFound), r["error"].(map[string]any)["code"])
	r = send("s4", "string", nil)
	require.Equal(t, float64(CodeMethodNotFound), r["error"].(map[string]any)["code"])
	require.Equal(t, int32(2), l.calls.Load())
}

func TestDuplicatesBelowThePositionAreDropped(t *testing.T) {
	f := startFake(t)
	l := &testLocal{batches: make(chan []Notification, 10)}
	var problems atomic.Int32
	c, err := Dial(context.Background(), f.url(), Options{Local: l, OnError: func(error) { problems.Add(1) }})
	require.NoError(t, err)
	defer c.Close()
	ws := next(t, f.conns)
	_, err = c.Subscribe(context.Background(), "news")
	require.NoError(t, err)
	var ns []map[string]any
	for _, s := range []int{4, 5, 6, 6, 7} {
		ns = append(ns, map[string]any{"channel": "news", "seq": s, "event": "new", "object_type": "m", "object": map[string]any{}})
	}
	f.write(t, ws, map[string]any{"jsonrpc": "2.0", "method": "onNotificationReceived", "params": map[string]any{"notifications": ns}})
	b := next(t, l.batches)
	require.Len(t, b, 2)
	require.Equal(t, uint64(6), b[0].Seq)
	require.Equal(t, uint64(7), b[1].Seq)
	pos, _ := c.Position("news")
	require.Equal(t, Position{Seq: 7, Epoch: "e1"}, pos)
	require.Zero(t, problems.Load())
}

func TestLocalInterfaceShapes(t *testing.T) {
	l, err := newLocal(Methods{"x": func(context.Context, json.RawMessage) (any, error) { return 1, nil }})
	require.NoError(t, err)
	require.Equal(t, []string{"x"}, l.names())

	_, err = newLocal(&badLocal{})
	require.ErrorContains(t, err, "Bad")

	_, err = newLocal(struct{}{})
	require.ErrorContains(t, err, "no method")
}

type badLocal struct{}

func (*badLocal) Bad(context.Context, int, int) error { return nil }

func jwtWithExp(exp time.Time) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"sub":"a","exp":%d}`, exp.Unix())))
	return "e30." + payload + ".sig"
}

func TestAnExpiredTokenIsReplacedBeforeConnecting(t *testing.T) {
	calls := 0
	c := &Client{opts: Options{CallTimeout: time.Second, GetToken: func(context.Context) (string, error) {
		calls++
		return jwtWithExp(time.Now().Add(time.Hour)), nil
	}}, ctx: context.Background()}
	c.token = jwtWithExp(time.Now().Add(-time.Minute))
	tok, err := c.usableToken(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, calls)
	require.Equal(t, tok, c.token)
	_, err = c.usableToken(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, calls, "a live token is kept")
}

func TestBackoffGrowsWithJitterAndStaysBounded(t *testing.T) {
	for n := 0; n < 20; n++ {
		d := backoff(100*time.Millisecond, 2*time.Second, n)
		ceil := min(100*time.Millisecond<<n, 2*time.Second)
		require.GreaterOrEqual(t, d, ceil/2)
		require.LessOrEqual(t, d, ceil)
	}
}

// ptrLocal presents its method on a pointer receiver only.
type ptrLocal struct{}

func (*ptrLocal) OnNotificationReceived(context.Context, *Batch) error { return nil }

// A local interface with no method herald can call says what to pass
// instead when the usual mistake is visible: a value whose methods have a
// pointer receiver, or a map of functions.
func TestLocalInterfaceWithoutMethodsSaysWhatToPass(t *testing.T) {
	_, err := newLocal(ptrLocal{})
	require.ErrorContains(t, err, "its methods have a pointer receiver: pass &ptrLocal{...}")
	_, err = newLocal(&ptrLocal{})
	require.NoError(t, err)
	_, err = newLocal(map[string]any{"onNotificationReceived": func() {}})
	require.ErrorContains(t, err, "use client.Methods")
}
