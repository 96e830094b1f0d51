package pluginhost_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/stretchr/testify/require"
)

var bg = context.Background()

func TestEchoLoadCallAuthorize(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	m := newManager(t, core, nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "echo", "echo", nil)}))
	require.True(t, m.Ready())

	st := statusOf(m, "echo")
	require.Equal(t, pluginhost.StateRunning, st.State)
	require.Equal(t, "1.0.0", st.Version)
	require.Equal(t, []string{"echo"}, st.Prefixes)
	owner, ok := m.Owner("echo:alice")
	require.True(t, ok)
	require.Equal(t, "echo", owner)
	_, ok = m.Owner("chat:1")
	require.False(t, ok)

	alice := pluginhost.Caller{ConnID: "c1", UserID: "alice"}
	refused, err := m.Authorize(bg, "echo", alice, []string{"echo:alice", "echo:bob"})
	require.NoError(t, err)
	require.Len(t, refused, 1)
	require.Equal(t, "echo:bob", refused[0].Channel)
	require.Equal(t, rpc.CodeForbidden, refused[0].Code)

	res, err := m.Call(bg, "echo", "say", alice, json.RawMessage(`{"text":"hi"}`))
	require.NoError(t, err)
	require.JSONEq(t, `{"channel":"echo:alice","seq":1,"id":"echo:alice#1"}`, string(res))
	require.Len(t, core.emitted, 1, "acknowledged means recorded")
	require.JSONEq(t, `{"text":"hi","user_id":"alice"}`, string(core.emitted[0].Object))

	_, err = m.Call(bg, "echo", "say", alice, json.RawMessage(`{"text":5}`))
	require.Equal(t, rpc.CodeInvalidParams, rpcCode(t, err))
	_, err = m.Call(bg, "nope", "say", alice, nil)
	require.Equal(t, rpc.CodeUnknownNamespace, rpcCode(t, err))
	_, err = m.Call(bg, "echo", "shout", alice, nil)
	require.Equal(t, rpc.CodeMethodNotFound, rpcCode(t, err))

	// Server-to-client call through the plugin.
	core.onClient = func(conn, method string, params json.RawMessage) (json.RawMessage, error) {
		require.Equal(t, "c1", conn)
		return json.RawMessage(`{"method":"` + method + `"}`), nil
	}
	res, err = m.Call(bg, "echo", "ask", alice, json.RawMessage(`{"method":"whereAreYou"}`))
	require.NoError(t, err)
	require.JSONEq(t, `{"connection":"c1","result":{"method":"whereAreYou"}}`, string(res))
}

func TestBackendOnlyMethodsAndHostSubscribe(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	core.connect("c1", "alice")
	m := newManager(t, core, nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))

	_, err := m.Call(bg, "tester", "admin", pluginhost.Caller{ConnID: "c1", UserID: "alice"}, nil)
	require.Equal(t, rpc.CodeForbidden, rpcCode(t, err))
	res, err := m.Call(bg, "tester", "admin", pluginhost.Caller{Backend: true}, nil)
	require.NoError(t, err)
	require.JSONEq(t, `"ok"`, string(res))

	// c1 is on none of the plugin's channels and is not calling it: a
	// connection id learned from an event is no licence to subscribe it.
	_, err = m.Call(bg, "tester", "join", pluginhost.Caller{Backend: true}, json.RawMessage(`{"conn":"c1","channel":"tester:room"}`))
	require.Equal(t, rpc.CodeForbidden, rpcCode(t, err), "a connection the plugin does not reach")
	require.ErrorContains(t, err, `"c1" is neither`)
	// Calling the plugin, c1 may be subscribed during its call.
	res, err = m.Call(bg, "tester", "join", pluginhost.Caller{ConnID: "c1", UserID: "alice"}, json.RawMessage(`{"conn":"c1","channel":"tester:room"}`))
	require.NoError(t, err)
	require.JSONEq(t, `{"Count":1,"Users":["alice"]}`, string(res))
	// Now on one of its channels, c1 may be subscribed to another by a backend's call.
	res, err = m.Call(bg, "tester", "join", pluginhost.Caller{Backend: true}, json.RawMessage(`{"conn":"c1","channel":"tester:other"}`))
	require.NoError(t, err)
	require.JSONEq(t, `{"Count":1,"Users":["alice"]}`, string(res))
	_, err = m.Call(bg, "tester", "join", pluginhost.Caller{Backend: true}, json.RawMessage(`{"conn":"c1","channel":"echo:alice"}`))
	require.Equal(t, rpc.CodeForbidden, rpcCode(t, err), "a plugin subscribes only to its own channels")
}

func TestHTTPRoutesStreamAndAuthenticate(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	srv := httptest.NewServer(m)
	defer srv.Close()

	get := func(path, token string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	resp := get("/v1/tester/7/stream", "user:alice")
	require.Equal(t, 200, resp.StatusCode)
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	resp.Body.Close()
	require.Equal(t, []string{"7 alice 0", "7 alice 1", "7 alice 2"}, lines)

	resp = get("/v1/tester/7/stream", "")
	require.Equal(t, 401, resp.StatusCode)
	resp.Body.Close()
	resp = get("/v1/tester/7/stream", "key")
	require.Equal(t, 403, resp.StatusCode, "the route takes user tokens only")
	resp.Body.Close()
	resp = get("/v1/elsewhere", "key")
	require.Equal(t, 404, resp.StatusCode)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `"code":-32601`)

	req, _ := http.NewRequest("POST", srv.URL+"/v1/tester/7/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "the path has a route, for another method")
	require.Equal(t, "GET", resp.Header.Get("Allow"))
	srv.CloseClientConnections()
}

// A route's request body that does not arrive within the server's
// ReadTimeout (server.read_timeout) is a 408 naming the key, not a 400.
func TestHTTPRouteSlowBodyIs408(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	srv := httptest.NewUnstartedServer(m)
	srv.Config.ReadTimeout = time.Second
	srv.Start()
	defer srv.Close()

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprint(c, "GET /v1/tester/7/stream HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer user:alice\r\nContent-Length: 100000\r\n\r\n")
	require.NoError(t, err)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a byte every 100ms: the body would take hours
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusRequestTimeout, resp.StatusCode, string(body))
	require.Contains(t, string(body), "server.read_timeout")
}

// A stream opened with a token ends when the caller's rights do (its
// token's expiry plus the grace, Caller.Until), as the subscriptions of a
// connection would; one whose plugin dies is cut, not ended, so that its
// client can tell the two apart.
func TestHTTPStreamEndsWithTheCallerAndIsCutWhenThePluginDies(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	srv := httptest.NewServer(m)
	defer srv.Close()
	open := func(query, token string) (*http.Response, []string, error) {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second) // a bound on the test, not a measure
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/tester/7/stream?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var lines []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		return resp, lines, sc.Err()
	}

	resp, lines, err := open("follow=1", "user:alice@500")
	require.Equal(t, 200, resp.StatusCode)
	require.NoError(t, err, "the stream ended at the caller's Until, cleanly")
	require.GreaterOrEqual(t, len(lines), 3)

	resp, lines, err = open("crash=1", "user:alice")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, []string{"7 alice 0"}, lines)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "a plugin that died mid-stream cuts the response")
	srv.CloseClientConnections()
}

func TestEmitAtRateInOrder(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	m := newManager(t, core, nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))

	res, err := m.Call(bg, "tester", "flood", pluginhost.Caller{Backend: true}, json.RawMessage(`{"channel":"tester:f","count":20000,"workers":16}`))
	require.NoError(t, err)
	require.JSONEq(t, `20000`, string(res))
	require.Equal(t, 20000, core.count)

	res, err = m.Call(bg, "tester", "emitN", pluginhost.Caller{Backend: true}, json.RawMessage(`{"channel":"tester:o","from":0,"count":500}`))
	require.NoError(t, err)
	require.JSONEq(t, `{"last_seq":500}`, string(res))
	got := core.objects("tester:o")
	require.Len(t, got, 500)
	for i, n := range got {
		require.Equal(t, i, n)
	}
}

func TestKillRestartUnderEmitStream(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	core.connect("c1", "alice", "tester:room")
	m := newManager(t, core, nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))

	// One emitter calls emitN over and over with increasing ranges; it keeps
	// the ranges that were acknowledged.
	const chunk = 50
	var (
		mu    sync.Mutex
		acked []int
		codes = map[int]int{}
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for from := 0; ; from += chunk {
			select {
			case <-stop:
				return
			default:
			}
			params, _ := json.Marshal(map[string]any{"channel": "tester:k", "from": from, "count": chunk})
			_, err := m.Call(bg, "tester", "emitN", pluginhost.Caller{Backend: true}, params)
			mu.Lock()
			if err == nil {
				for i := from; i < from+chunk; i++ {
					acked = append(acked, i)
				}
			} else {
				var e *rpc.Error
				if errors.As(err, &e) {
					codes[e.Code]++
				} else {
					codes[0]++
				}
			}
			mu.Unlock()
		}
	}()

	for kill := 1; kill <= 2; kill++ {
		// Let some emits be acknowledged, then kill -9 the process.
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= kill*1000 }, 20e9, 1e6)
		st := statusOf(m, "tester")
		require.NotZero(t, st.PID)
		require.NoError(t, syscall.Kill(st.PID, syscall.SIGKILL))
		waitRunning(t, m, "tester", kill)
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 3000 }, 20e9, 1e6)
	close(stop)
	<-done

	got := core.objects("tester:k")
	seen := map[int]int{}
	for i, n := range got {
		seen[n]++
		if i > 0 {
			require.Less(t, got[i-1], n, "history is in emit order")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range acked {
		require.Equal(t, 1, seen[n], "acknowledged notification %d recorded exactly once", n)
	}
	for code := range codes {
		require.Contains(t, []int{rpc.CodePluginUnavailable}, code, "calls during the restart fail with -32050: %v", codes)
	}
	require.Equal(t, 2, statusOf(m, "tester").Restarts)
}

func TestCallsFailFastWhileDownAndReplayAfterRestart(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	core.connect("c1", "alice", "tester:room", "other:x")
	m := newManager(t, core, nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))

	events := func() []map[string]any {
		res, err := m.Call(bg, "tester", "events", pluginhost.Caller{Backend: true}, nil)
		require.NoError(t, err)
		var evs []map[string]any
		require.NoError(t, json.Unmarshal(res, &evs))
		return evs
	}
	replayed := func() bool {
		evs := events()
		return len(evs) == 3 && evs[0]["Kind"] == "reset" &&
			evs[1]["Kind"] == "connected" && evs[1]["ConnID"] == "c1" && evs[1]["Replay"] == true &&
			evs[2]["Kind"] == "subscribed" && evs[2]["Channel"] == "tester:room"
	}
	require.Eventually(t, replayed, 10e9, 1e6, "the plugin learns current connections at start: %v", events())

	// Live events after the replay.
	m.Notify(pluginhost.Event{Kind: pluginhost.Connected, ConnID: "c2", UserID: "bob"})
	m.Notify(pluginhost.Event{Kind: pluginhost.Subscribed, ConnID: "c2", Channel: "other:y"}) // not tester's: not sent
	m.Notify(pluginhost.Event{Kind: pluginhost.Subscribed, ConnID: "c2", Channel: "tester:room"})
	require.Eventually(t, func() bool { return len(events()) == 5 }, 10e9, 1e6)
	evs := events()
	require.Equal(t, "connected", evs[3]["Kind"])
	require.Equal(t, "tester:room", evs[4]["Channel"])

	// Crash it with a long backoff: calls fail fast with -32050 meanwhile.
	slow := newManager(t, core, func(o *pluginhost.Options) { o.BackoffMin, o.BackoffMax = time.Hour, time.Hour })
	require.NoError(t, slow.Apply(bg, []config.Plugin{block(t, "t2", "tester", map[string]string{"TESTER_PREFIX": "t2", "TESTER_ROUTE": "/t2/{id}"})}))
	_, err := slow.Call(bg, "t2", "crash", pluginhost.Caller{Backend: true}, nil)
	require.Equal(t, rpc.CodePluginUnavailable, rpcCode(t, err))
	require.ErrorContains(t, err, `plugin "t2" is unavailable (it exited during crash)`)
	require.ErrorContains(t, err, "what the call did before the plugin exited is kept", "a retry may repeat it")
	require.Eventually(t, func() bool { return statusOf(slow, "t2").State == pluginhost.StateRestarting }, 10e9, 1e6)
	_, err = slow.Call(bg, "t2", "events", pluginhost.Caller{Backend: true}, nil)
	require.Equal(t, rpc.CodePluginUnavailable, rpcCode(t, err))
	_, err = slow.Authorize(bg, "t2", pluginhost.Caller{UserID: "a"}, []string{"t2:ok"})
	require.Equal(t, rpc.CodePluginUnavailable, rpcCode(t, err))
	require.False(t, slow.Ready())
	owner, _ := slow.Owner("t2:x")
	require.Equal(t, "t2", owner, "a plugin that is down keeps its channels")

	// Crash the first one: it comes back and replays again.
	core.connect("c3", "carol", "tester:room")
	_, err = m.Call(bg, "tester", "crash", pluginhost.Caller{Backend: true}, nil)
	require.Error(t, err)
	waitRunning(t, m, "tester", 1)
	require.Eventually(t, func() bool {
		evs := events()
		conns := map[any]bool{}
		for _, e := range evs {
			if e["Kind"] == "connected" && e["Replay"] == true {
				conns[e["ConnID"]] = true
			}
		}
		return len(evs) > 0 && evs[0]["Kind"] == "reset" && conns["c1"] && conns["c3"]
	}, 10e9, 1e6)
}

func TestApplyAddRemoveChange(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)
	echo := block(t, "echo", "echo", nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{echo}))
	echoPID := statusOf(m, "echo").PID

	tester := block(t, "tester", "tester", nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{echo, tester}))
	require.Len(t, m.Status(), 2)
	require.Equal(t, echoPID, statusOf(m, "echo").PID, "an unchanged plugin is left alone")
	testerPID := statusOf(m, "tester").PID

	changed := block(t, "tester", "tester", map[string]string{"TESTER_VERSION": "2.0.0"})
	require.NoError(t, m.Apply(bg, []config.Plugin{changed}))
	st := m.Status()
	require.Len(t, st, 1)
	require.Equal(t, "tester", st[0].Name)
	require.Equal(t, "2.0.0", st[0].Version)
	require.NotEqual(t, testerPID, st[0].PID)
	_, err := m.Call(bg, "echo", "say", pluginhost.Caller{UserID: "a"}, json.RawMessage(`{"text":"x"}`))
	require.Equal(t, rpc.CodeUnknownNamespace, rpcCode(t, err))

	require.NoError(t, m.Apply(bg, nil))
	require.Empty(t, m.Status())
}

func TestStartupErrors(t *testing.T) {
	checkGoroutines(t)
	for _, tc := range []struct {
		name    string
		plugins []config.Plugin
		want    []string
	}{
		{"duplicate prefix", []config.Plugin{
			block(t, "a", "tester", map[string]string{"TESTER_ROUTE": "/a/{x}"}),
			block(t, "b", "tester", map[string]string{"TESTER_ROUTE": "/b/{x}"}),
		}, []string{`plugin "b": command: claims channel prefix "tester", which plugin "a" claims too`}},
		{"duplicate route", []config.Plugin{
			block(t, "a", "tester", map[string]string{"TESTER_PREFIX": "a"}),
			block(t, "b", "tester", map[string]string{"TESTER_PREFIX": "b"}),
		}, []string{`plugin "b": command: claims HTTP route "GET /v1/tester/{id}/stream", which plugin "a" claims too`}},
		{"core prefix config", []config.Plugin{block(t, "a", "tester", map[string]string{"TESTER_PREFIX": "config"})},
			[]string{`plugin "a": command: claims channel prefix "config", which is Herald's own`}},
		{"core prefix $server", []config.Plugin{block(t, "a", "tester", map[string]string{"TESTER_PREFIX": "$server"})},
			[]string{`plugin "a": command: claims channel prefix "$server", which is Herald's own`}},
		{"route on /metrics", []config.Plugin{block(t, "a", "tester", map[string]string{"TESTER_ROUTE": "/metrics"})},
			[]string{`plugin "a": command: claims HTTP route "GET /metrics", which collides with Herald's own /metrics`}},
		{"route under /admin/", []config.Plugin{block(t, "a", "tester", map[string]string{"TESTER_ROUTE": "/admin/{page}"})},
			[]string{`claims HTTP route "GET /admin/{page}", which collides with Herald's own /admin/`}},
		{"route on the plugin call API", []config.Plugin{block(t, "a", "tester", map[string]string{"TESTER_ROUTE": "/v1/plugins/{p}/{m}"})},
			[]string{`claims HTTP route "GET /v1/plugins/{p}/{m}", which collides with Herald's own /v1/plugins/{plugin}/{method}`}},
		{"route catching /ws", []config.Plugin{block(t, "a", "tester", map[string]string{"TESTER_ROUTE": "/{page}"})},
			[]string{`claims HTTP route "GET /{page}", which collides with Herald's own /ws`}},
		{"bad path", []config.Plugin{{Name: "ghost", Command: "/nonexistent/ghost"}},
			[]string{`plugin "ghost"`, `/nonexistent/ghost`}},
		{"handshake mismatch", []config.Plugin{block(t, "old", "badshake", nil)},
			[]string{`plugin "old"`, "protocol version mismatch", "herald speaks version 1", "99"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, newRecorder(), nil)
			err := m.Apply(bg, tc.plugins)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.Empty(t, m.Status(), "a failed boot leaves nothing running")
		})
	}
}

func TestReloadKeepsGoodPluginsAndReportsBadOnes(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)
	echo := block(t, "echo", "echo", nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{echo}))
	err := m.Apply(bg, []config.Plugin{echo, {Name: "ghost", Command: "/nonexistent/ghost"}})
	require.ErrorContains(t, err, `plugin "ghost"`)
	require.Equal(t, pluginhost.StateRunning, statusOf(m, "echo").State)
	require.Equal(t, pluginhost.StateFailed, statusOf(m, "ghost").State)
	require.False(t, m.Ready())
	require.NoError(t, m.Apply(bg, []config.Plugin{echo}))
	require.True(t, m.Ready())
}
