package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

func pluginBlock(name, pkg string, extra string) func(t *testing.T) string {
	return func(t *testing.T) string {
		return fmt.Sprintf("plugin %q {\n  command = %q\n%s\n}\n", name, heraldtest.Binary(t, pkg), extra)
	}
}

// presentMethods says hello on c presenting methods as its local interface
// and returns the connection's session id, by which a plugin or a backend
// names it.
func presentMethods(t *testing.T, c *heraldtest.Client, methods ...string) string {
	t.Helper()
	var hello struct {
		SessionID string `json:"session_id"`
	}
	require.NoError(t, json.Unmarshal(c.MustCall(t, "hello", map[string]any{"methods": methods}), &hello))
	return hello.SessionID
}

type pluginStatus struct {
	Name     string
	State    string
	Version  string
	Prefixes []string
	Restarts int
	PID      int
}

func plugins(t *testing.T, h *heraldtest.Herald) map[string]pluginStatus {
	t.Helper()
	status, body := h.Do(t, http.MethodGet, "/v1/plugins", nil, heraldtest.APIKey, nil)
	require.Equal(t, 200, status, string(body))
	var out struct{ Plugins []pluginStatus }
	require.NoError(t, json.Unmarshal(body, &out))
	m := map[string]pluginStatus{}
	for _, p := range out.Plugins {
		m[p.Name] = p
	}
	return m
}

func waitPlugin(t *testing.T, h *heraldtest.Herald, name string, ok func(pluginStatus) bool) pluginStatus {
	t.Helper()
	var last pluginStatus
	require.Eventually(t, func() bool {
		last = plugins(t, h)[name]
		return ok(last)
	}, heraldtest.Timeout, 20*time.Millisecond, "plugin %s: %+v", name, last)
	return last
}

func TestEchoPluginThroughHerald(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: pluginBlock("echo", "examples/echo-plugin", "")(t)})
	alice := h.Dial(t, "")
	alice.MustCall(t, "hello", map[string]any{"token": h.Token(t, "alice"), "methods": []string{"onNotificationReceived", "confirm"}})

	// Authorization by the owner of the prefix.
	e := alice.CallErr(t, "subscribe", map[string]any{"channels": []string{"echo:alice", "echo:bob"}})
	require.Equal(t, -32003, e.Code)
	require.Contains(t, string(e.Data), "echo:bob")
	alice.Subscribe(t, "echo:alice")

	// A client call emits; the answer comes after the notification is in history.
	var said struct {
		Channel string
		Seq     uint64
		ID      string
	}
	require.NoError(t, json.Unmarshal(alice.MustCall(t, "echo.say", map[string]any{"text": "hi"}), &said))
	require.Equal(t, "echo:alice", said.Channel)
	n := alice.Notifications(t, 1)[0]
	require.Equal(t, said.ID, n.ID)
	require.JSONEq(t, `{"text":"hi","user_id":"alice"}`, string(n.Object))

	// The backend route, with backend rights.
	status, body := h.Do(t, http.MethodPost, "/v1/plugins/echo/say", map[string]any{"text": "from backend", "user": "alice"}, heraldtest.APIKey, nil)
	require.Equal(t, 200, status, string(body))
	require.JSONEq(t, `{"text":"from backend","user_id":"alice"}`, string(alice.Notifications(t, 1)[0].Object))
	status, body = h.Do(t, http.MethodPost, "/v1/plugins/echo/say", map[string]any{"user": "alice"}, heraldtest.APIKey, nil)
	require.Equal(t, 400, status, string(body))
	require.Contains(t, string(body), "text")
	status, _ = h.Do(t, http.MethodPost, "/v1/plugins/echo/say", map[string]any{"text": "x"}, "", nil)
	require.Equal(t, 401, status)
	status, _ = h.Do(t, http.MethodPost, "/v1/plugins/nope/say", map[string]any{}, heraldtest.APIKey, nil)
	require.Equal(t, 404, status)

	// Unknown plugin methods.
	nosuch := alice.CallErr(t, "echo.nosuch", map[string]any{})
	require.Equal(t, -32601, nosuch.Code)
	require.Contains(t, nosuch.Message, "echo has echo.", "the -32601 lists the plugin's methods")

	// A plugin calls a method of the client's local interface.
	go func() {
		m := <-alice.Calls
		require.Equal(t, "confirm", m.Method)
		reply, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": map[string]any{"ok": true, "got": m.Params}})
		_ = alice.Send(reply)
	}()
	res := alice.MustCall(t, "echo.ask", map[string]any{"method": "confirm", "params": map[string]any{"q": 1}})
	require.Contains(t, string(res), `"ok":true`)
	// A method the client did not present is never sent.
	e = alice.CallErr(t, "echo.ask", map[string]any{"method": "notPresented"})
	require.NotZero(t, e.Code)
	select {
	case m := <-alice.Calls:
		t.Fatalf("server called a method the client did not present: %+v", m)
	case <-time.After(100 * time.Millisecond):
	}

	// Operators see it.
	p := plugins(t, h)["echo"]
	require.Equal(t, "running", p.State)
	require.Equal(t, []string{"echo"}, p.Prefixes)
	status, _ = h.Do(t, http.MethodGet, "/readyz", nil, "", nil)
	require.Equal(t, 200, status)
	stdout, stderr, code := herald(t, "plugins", "-url", h.URL, "-key", heraldtest.APIKey)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "echo")
	require.Contains(t, stdout, "running")
	require.Contains(t, h.Logs(), "echo", "plugin logs flow into herald's log")
}

// kill -9 of a plugin under an emit stream: the client stays connected, every
// acknowledged notification arrives exactly once, in order, and calls fail
// fast with -32050 while the plugin is down.
func TestPluginCrashAndRestartUnderEmitStream(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: pluginBlock("tester", "internal/testplugins/tester", "")(t)})
	c := h.Dial(t, h.Token(t, "alice"))
	c.Subscribe(t, "tester:ok")
	caller := h.Dial(t, h.Token(t, "bob"))

	before := waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" && p.PID > 0 })

	var mu sync.Mutex
	var maxAcked uint64
	sawUnavailable := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		from := 0
		for from < 3000 {
			res, rerr, err := caller.Call("tester.emitN", map[string]any{"channel": "tester:ok", "from": from, "count": 50})
			if err != nil {
				return
			}
			if rerr != nil {
				mu.Lock()
				if rerr.Code == -32050 {
					sawUnavailable = true
				}
				mu.Unlock()
				// The batch may have been cut part way: the rest of it is
				// never emitted, which the seq check tolerates.
				time.Sleep(20 * time.Millisecond)
				from += 50
				continue
			}
			var r struct {
				LastSeq uint64 `json:"last_seq"`
			}
			_ = json.Unmarshal(res, &r)
			mu.Lock()
			maxAcked = max(maxAcked, r.LastSeq)
			mu.Unlock()
			from += 50
		}
	}()

	time.Sleep(300 * time.Millisecond)
	require.NoError(t, syscall.Kill(before.PID, syscall.SIGKILL))
	after := waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" && p.PID != before.PID })
	require.GreaterOrEqual(t, after.Restarts, 1)
	<-done

	mu.Lock()
	acked := maxAcked
	unavailable := sawUnavailable
	mu.Unlock()
	require.Greater(t, acked, uint64(0))
	// Every acknowledged notification arrives once, in seq order, without gaps.
	got := c.Notifications(t, int(acked))
	lastN := -1
	for i, n := range got {
		require.Equal(t, uint64(i+1), n.Seq)
		var obj struct{ N int }
		require.NoError(t, json.Unmarshal(n.Object, &obj))
		require.Greater(t, obj.N, lastN, "objects arrive in emit order")
		lastN = obj.N
	}
	// The subscriber never lost its connection.
	c.MustCall(t, "ping", nil)
	t.Logf("acked %d notifications across a kill -9; saw -32050: %v", acked, unavailable)

	// While down, calls fail fast with -32050.
	cur := plugins(t, h)["tester"]
	require.NoError(t, syscall.Kill(cur.PID, syscall.SIGKILL))
	var code int
	require.Eventually(t, func() bool {
		_, rerr, err := caller.Call("tester.events", map[string]any{})
		if err != nil || rerr == nil {
			return false
		}
		code = rerr.Code
		return true
	}, heraldtest.Timeout, time.Millisecond)
	require.Equal(t, -32050, code)
	waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" && p.PID != cur.PID })

	// After the restart, the plugin learns the current connections again:
	// the replay follows the reset, and may still be on its way when the
	// plugin reports running.
	var events []struct {
		Kind    string
		ConnID  string
		Channel string
		Replay  bool
	}
	replayed := func() bool {
		events = nil
		require.NoError(t, json.Unmarshal(caller.MustCall(t, "tester.events", map[string]any{}), &events))
		for _, ev := range events {
			if ev.Kind == "subscribed" && ev.Channel == "tester:ok" && ev.Replay {
				return true
			}
		}
		return false
	}
	require.Eventually(t, replayed, heraldtest.Timeout, 20*time.Millisecond, "no replayed subscription after the restart")
}

func TestSIGHUPAddsAndRemovesPlugins(t *testing.T) {
	echo := pluginBlock("echo", "examples/echo-plugin", "")(t)
	tester := pluginBlock("tester", "internal/testplugins/tester", "")(t)
	h := heraldtest.Start(t, heraldtest.Options{HCL: echo})
	c := h.Dial(t, h.Token(t, "alice"))
	c.Subscribe(t, "echo:alice")

	cfg, err := os.ReadFile(h.ConfigPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(h.ConfigPath, append(cfg, []byte(tester)...), 0o600))
	h.Signal(t, syscall.SIGHUP)
	waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" })
	c.Subscribe(t, "tester:ok")

	withoutEcho := strings.Replace(string(cfg), echo, "", 1) + tester
	require.NoError(t, os.WriteFile(h.ConfigPath, []byte(withoutEcho), 0o600))
	h.Signal(t, syscall.SIGHUP)
	require.Eventually(t, func() bool { _, ok := plugins(t, h)["echo"]; return !ok }, heraldtest.Timeout, 20*time.Millisecond)
	require.Equal(t, -32004, c.CallErr(t, "echo.say", map[string]any{"text": "x"}).Code)

	// The client connection survived both reloads; its subscription to the
	// removed plugin's channel ended, and it was told.
	h.Publish(t, heraldtest.N("tester:ok", "e", "t", `{}`))
	ns := c.Notifications(t, 2)
	require.Equal(t, "$server unsubscribed", ns[0].Channel+" "+ns[0].Event)
	require.JSONEq(t, `{"channels":[{"channel":"echo:alice","reason":"plugin echo was removed from the config"}]}`, string(ns[0].Object))
	require.Equal(t, "tester:ok", ns[1].Channel)

	// A broken config on SIGHUP keeps the running one.
	require.NoError(t, os.WriteFile(h.ConfigPath, []byte("this is { not hcl"), 0o600))
	h.Signal(t, syscall.SIGHUP)
	h.WaitLog(t, "config rejected", heraldtest.Timeout)
	require.Equal(t, "running", plugins(t, h)["tester"].State)
}

// serveFails runs herald serve with cfg and returns its stderr once it exits.
func serveFails(t *testing.T, cfg string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "herald.hcl")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf("server {\n listen = \"127.0.0.1:0\"\n}\nauth {\n token_secret = \"s\"\n api_keys = [\"k\"]\n}\n%s", cfg)), 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, heraldtest.Binary(t, "cmd/herald"), "serve", "-config", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	require.Error(t, err, "herald should refuse to start")
	require.NotEqual(t, context.DeadlineExceeded, ctx.Err(), "herald should exit, not hang")
	return stderr.String()
}

func TestPluginStartupErrors(t *testing.T) {
	tester := heraldtest.Binary(t, "internal/testplugins/tester")
	t.Run("duplicate prefix", func(t *testing.T) {
		out := serveFails(t, fmt.Sprintf(`plugin "one" {
  command = %q
}
plugin "two" {
  command = %q
}`, tester, tester))
		require.Contains(t, out, "one")
		require.Contains(t, out, "two")
		require.Contains(t, out, "tester")
	})
	t.Run("bad path", func(t *testing.T) {
		out := serveFails(t, `plugin "ghost" {
  command = "/nonexistent/plugin"
}`)
		require.Contains(t, out, "ghost")
		require.Contains(t, out, "/nonexistent/plugin")
	})
	t.Run("handshake mismatch", func(t *testing.T) {
		out := serveFails(t, fmt.Sprintf(`plugin "old" {
  command = %q
}`, heraldtest.Binary(t, "internal/testplugins/badshake")))
		require.Contains(t, out, "old")
		require.Contains(t, strings.ToLower(out), "version")
	})
}

// A plugin emitting at rate through herald: every notification reaches the
// subscriber, each channel in seq order.
func TestPluginEmitAtRateReachesClients(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: pluginBlock("tester", "internal/testplugins/tester", "")(t)})
	c := h.Dial(t, h.Token(t, "alice"))
	const workers, count = 4, 8000
	var chans []string
	for w := 0; w < workers; w++ {
		chans = append(chans, fmt.Sprintf("tester:ok:%d", w))
	}
	c.Subscribe(t, chans...)
	start := time.Now()
	res := h.Dial(t, h.Token(t, "bob")).MustCall(t, "tester.flood", map[string]any{"channel": "tester:ok", "count": count, "workers": workers})
	require.JSONEq(t, fmt.Sprint(count), string(res))
	t.Logf("%d notifications emitted and acknowledged in %v", count, time.Since(start))
	last := map[string]uint64{}
	for _, n := range c.Notifications(t, count) {
		require.Equal(t, last[n.Channel]+1, n.Seq, n.Channel)
		last[n.Channel] = n.Seq
	}
	require.Len(t, last, workers)
}
