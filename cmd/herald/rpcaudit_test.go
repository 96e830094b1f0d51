package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// A subscribe that resumes several channels, each with more missed
// notifications than half the outbox holds, delivers every one of them, in
// seq order per channel, and then the live ones of every channel.
func TestResumeOfSeveralChannelsDeliversEveryOne(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: "delivery {\n  outbox_limit = 8\n}\n"})
	channels := []string{"ra", "rb", "rc"}
	const missed = 40
	probe := h.Dial(t, h.Token(t, "probe"))
	since := map[string]any{}
	for _, s := range probe.Subscribe(t, channels...) {
		since[s.Channel] = map[string]any{"seq": s.Seq, "epoch": s.Epoch}
	}
	var ns []map[string]any
	for i := range missed {
		for _, ch := range channels {
			ns = append(ns, heraldtest.N(ch, "e", "t", fmt.Sprintf(`{"i":%d}`, i)))
		}
	}
	h.Publish(t, ns...)

	c := h.Dial(t, h.Token(t, "alice"))
	for _, s := range c.SubscribeParams(t, map[string]any{"channels": channels, "since": since}) {
		require.NotNil(t, s.Recovered)
		require.True(t, *s.Recovered, s.Channel)
	}
	last := map[string]uint64{}
	for _, n := range c.Notifications(t, missed*len(channels)) {
		require.Equal(t, last[n.Channel]+1, n.Seq, "%s: in seq order, none missing", n.Channel)
		last[n.Channel] = n.Seq
	}
	for _, ch := range channels {
		require.EqualValues(t, missed, last[ch], ch)
		h.Publish(t, heraldtest.N(ch, "e", "t", `{"live":true}`))
	}
	got := map[string]uint64{}
	for _, n := range c.Notifications(t, len(channels)) {
		got[n.Channel] = n.Seq
	}
	for _, ch := range channels {
		require.EqualValues(t, missed+1, got[ch], "%s went live", ch)
	}
}

// A connection whose token expired keeps the budget of an authenticated
// one (its refresh must not be refused by the budget meant for strangers),
// and its calls say that the token expired.
func TestExpiredConnectionKeepsItsBudgetToRefresh(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: "limits {\n  max_batch_calls = 20\n}\n"})
	c := h.Dial(t, heraldtest.MintToken(t, "alice", 2*time.Second, nil))
	require.Equal(t, "token_expired", c.Notifications(t, 1)[0].Event)

	const pings = 5 // more than the 2 of a batch before authentication
	frame := []byte{'['}
	for i := 1; i <= pings; i++ {
		if i > 1 {
			frame = append(frame, ',')
		}
		frame = fmt.Appendf(frame, `{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i)
	}
	require.NoError(t, c.Send(append(frame, ']')))
	for range pings {
		m := c.NextUnmatched(t)
		require.Nil(t, m.Error, "%+v", m.Error)
		require.JSONEq(t, `"pong"`, string(m.Result))
	}
	e := c.CallErr(t, "presence", map[string]any{"channel": "news"})
	require.Equal(t, -32001, e.Code)
	require.Contains(t, e.Message, "token expired")
	c.MustCall(t, "authenticate", map[string]any{"token": h.Token(t, "alice")})
	c.Subscribe(t, "news")
}

// A text frame that is not UTF-8 fails the connection with 1007 (RFC 6455
// section 8.1) rather than being answered with its bytes echoed.
func TestTextFrameThatIsNotUTF8Closes1007(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	c := h.Dial(t, h.Token(t, "alice"))
	require.NoError(t, c.Send([]byte("{\"jsonrpc\":\"2.0\",\"id\":\"a\xffb\",\"method\":\"ping\"}")))
	require.Equal(t, 1007, c.WaitClosed(t))
	other := h.Dial(t, h.Token(t, "bob"))
	other.MustCall(t, "ping", nil)
}

// "params": null is absent params, for herald's methods and a plugin's
// alike.
func TestNullParamsAreAbsentParams(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: pluginBlock("echo", "examples/echo-plugin", "")(t)})
	c := h.Dial(t, h.Token(t, "alice"))
	send := func(method, params string) heraldtest.Msg {
		frame := `{"jsonrpc":"2.0","id":1,"method":"` + method + `"`
		if params != "" {
			frame += `,"params":` + params
		}
		require.NoError(t, c.Send([]byte(frame+"}")))
		return c.NextUnmatched(t)
	}
	absent, null := send("echo.say", ""), send("echo.say", "null")
	require.NotNil(t, absent.Error)
	require.Equal(t, absent.Error, null.Error)
	require.JSONEq(t, `"pong"`, string(send("ping", "null").Result))
}

// A malformed answer to a plugin's call of a client method fails that call
// at once, saying what was wrong, rather than at its timeout as if the
// client had not answered; the client is told with id null (the id it sent
// is herald's own).
func TestMalformedAnswerFailsTheClientCallAtOnce(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		HCL: "limits {\n  call_timeout = \"60s\"\n}\n" + pluginBlock("echo", "examples/echo-plugin", "")(t),
	})
	alice := h.Dial(t, h.Token(t, "alice"))
	alice.MustCall(t, "hello", map[string]any{"methods": []string{"onNotificationReceived", "getLoc"}})
	for _, answer := range []string{
		`{"jsonrpc":"2.0","id":%s,"error":{"code":"bad","message":"m"}}`,
		`{"jsonrpc":"2.0","id":%s,"result":1,"error":{"code":1,"message":"x"}}`,
		`{"id":%s,"result":1}`,
	} {
		done := make(chan *heraldtest.RPCError, 1)
		go func() {
			_, e, _ := alice.Call("echo.ask", map[string]any{"method": "getLoc"})
			done <- e
		}()
		var call heraldtest.Msg
		select {
		case call = <-alice.Calls:
		case <-time.After(heraldtest.Timeout):
			t.Fatal("the client was not called")
		}
		require.NoError(t, alice.Send(fmt.Appendf(nil, answer, call.ID)))
		reply := alice.NextUnmatched(t)
		require.NotNil(t, reply.Error, answer)
		require.Equal(t, -32600, reply.Error.Code, answer)
		require.Equal(t, "null", string(reply.ID), "%s: the client is not sent herald's own id back", answer)
		var got *heraldtest.RPCError
		select {
		case got = <-done:
		case <-time.After(heraldtest.Timeout):
			t.Fatalf("%s: the plugin's call was still waiting for an answer the client already gave", answer)
		}
		require.NotNil(t, got, answer)
		require.Equal(t, -32603, got.Code, answer)
		require.Contains(t, got.Message, "not a valid JSON-RPC response", answer)
	}
	var res json.RawMessage = alice.MustCall(t, "ping", nil)
	require.JSONEq(t, `"pong"`, string(res))
}

// Refused WebSocket upgrades are answered in the JSON error form of every
// other endpoint and say what to fix: the origin to add to
// server.allowed_origins, or that /ws takes WebSocket connections only.
func TestRefusedUpgradesSayWhatToFix(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	resp, err := http.Get(h.URL + "/ws")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.Contains(t, string(body), "this endpoint takes WebSocket connections only")

	_, resp, err = heraldtest.DialURL(h.WSURL+"?token="+h.Token(t, "alice"), http.Header{"Origin": {"http://evil.example"}})
	require.Error(t, err)
	require.NotNil(t, resp)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, string(body), `origin \"http://evil.example\" is not allowed: add it to server.allowed_origins`)
}

// What a plugin writes to its stdout and stderr (fmt.Println) reaches
// herald's log, with stream=stdout|stderr; and a plugin's lines are bounded
// by log.plugin_lines_per_second, the rest dropped and counted.
func TestPluginOutputReachesTheLogWithinItsBudget(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		HCL: "log {\n  plugin_lines_per_second = 20\n}\n" + pluginBlock("tester", "internal/testplugins/tester", "")(t),
	})
	status, body := h.Do(t, http.MethodPost, "/v1/plugins/tester/print", map[string]any{"text": "hello-from-print", "n": 1}, heraldtest.APIKey, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	h.WaitLog(t, "hello-from-print 0: plugin=tester stream=stdout", heraldtest.Timeout)
	h.WaitLog(t, "hello-from-print 0 (stderr): plugin=tester stream=stderr", heraldtest.Timeout)

	status, body = h.Do(t, http.MethodPost, "/v1/plugins/tester/print", map[string]any{"text": "flood", "n": 500}, heraldtest.APIKey, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	time.Sleep(1100 * time.Millisecond) // the budget refills: the next line reports the drops
	status, body = h.Do(t, http.MethodPost, "/v1/plugins/tester/print", map[string]any{"text": "after-flood", "n": 1}, heraldtest.APIKey, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	h.WaitLog(t, "after-flood 0: plugin=tester stream=stdout", heraldtest.Timeout)
	logs := h.Logs()
	require.Contains(t, logs, "plugin log lines dropped")
	require.Less(t, strings.Count(logs, "flood "), 500, "most of the flood was dropped")
}

// SIGTERM cuts the backends' plugin calls still running once the clients
// are closed (a long call such as kb.waitFor) with 503 -32050, rather than
// holding the drain to its 15 s bound and exiting 1.
func TestSIGTERMCutsLongBackendPluginCalls(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		HCL: "limits {\n  call_timeout = \"60s\"\n}\n" + pluginBlock("tester", "internal/testplugins/tester", "")(t),
	})
	entered := filepath.Join(t.TempDir(), "entered")
	type answer struct {
		status int
		body   []byte
	}
	called := make(chan answer, 1)
	go func() {
		status, body := h.Do(t, http.MethodPost, "/v1/plugins/tester/block", map[string]any{"entered": entered}, heraldtest.APIKey, nil)
		called <- answer{status, body}
	}()
	require.Eventually(t, func() bool { _, err := os.Stat(entered); return err == nil }, heraldtest.Timeout, 10*time.Millisecond)
	h.Signal(t, syscall.SIGTERM)
	a := <-called
	require.Equal(t, http.StatusServiceUnavailable, a.status, string(a.body))
	require.Contains(t, string(a.body), "-32050")
	require.Contains(t, string(a.body), "server is shutting down")
	require.NoError(t, h.Wait(t, 20*time.Second), "a drain that cut calls is a clean stop")
}

// A plugin's calls of a client's methods are bounded by the client's own
// limits turned around: no more waiting on it than limits.max_inflight_calls,
// and no call larger than limits.max_frame_bytes.
func TestServerToClientCallsAreBounded(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		HCL: "limits {\n  max_inflight_calls = 2\n  call_timeout = \"60s\"\n}\n" + pluginBlock("echo", "examples/echo-plugin", "")(t),
	})
	alice := h.Dial(t, h.Token(t, "alice"))
	sessionID := presentMethods(t, alice, "onNotificationReceived", "getLoc")
	alice.Subscribe(t, "echo:alice")
	ask := func(params map[string]any) (int, string) {
		status, body := h.Do(t, http.MethodPost, "/v1/plugins/echo/ask", map[string]any{"connection": sessionID, "method": "getLoc", "params": params}, heraldtest.APIKey, nil)
		return status, string(body)
	}

	_, body := ask(map[string]any{"pad": strings.Repeat("x", 70000)})
	require.Contains(t, body, "-32005")
	require.Contains(t, body, "limits.max_frame_bytes")

	answered := make(chan int, 2)
	for range 2 {
		go func() {
			status, _ := ask(map[string]any{})
			answered <- status
		}()
	}
	var waiting []heraldtest.Msg
	for range 2 {
		select {
		case c := <-alice.Calls:
			waiting = append(waiting, c)
		case <-time.After(heraldtest.Timeout):
			t.Fatal("the client was not called")
		}
	}
	_, body = ask(map[string]any{})
	require.Contains(t, body, "-32005")
	require.Contains(t, body, "limits.max_inflight_calls")
	for _, c := range waiting {
		require.NoError(t, alice.Send(fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%s,"result":"here"}`, c.ID)))
	}
	for range 2 {
		require.Equal(t, http.StatusOK, <-answered)
	}
}

// A since entry without an epoch cannot be checked against the channel's:
// it answers recovered: false with the current position, as a wrong epoch
// does, rather than an error.
func TestSinceWithoutAnEpochIsNotRecovered(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
	c := h.Dial(t, h.Token(t, "alice"))
	s := c.SubscribeParams(t, map[string]any{"channel": "news", "since": map[string]any{"news": map[string]any{"seq": 0}}})[0]
	require.NotNil(t, s.Recovered)
	require.False(t, *s.Recovered)
	require.EqualValues(t, 1, s.Seq)
	require.NotEmpty(t, s.Epoch)
}
