package main_test

import (
	"encoding/json"
	"fmt"
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

// On SIGHUP a plugin whose block changed answers -32050 (retry) while it
// restarts, never -32004; if its new version fails to start, its channels
// stay its own and answer -32050 until a reload fixes it.
func TestSIGHUPChangedPluginAnswersUnavailable(t *testing.T) {
	tester := pluginBlock("tester", "internal/testplugins/tester", "")(t)
	h := heraldtest.Start(t, heraldtest.Options{HCL: tester})
	c := h.Dial(t, h.Token(t, "alice"))
	c.Subscribe(t, "tester:ok")
	waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" })
	reload := func(block string) {
		cfg, err := os.ReadFile(h.ConfigPath)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(h.ConfigPath, []byte(strings.Replace(string(cfg), tester, block, 1)), 0o600))
		tester = block
		h.Signal(t, syscall.SIGHUP)
	}

	// A slow restart: every call meanwhile is -32050.
	reload(pluginBlock("tester", "internal/testplugins/tester", `  env = { TESTER_CONFIGURE_DELAY = "1500ms" }`)(t))
	codes := map[int]int{}
	before := plugins(t, h)["tester"].PID
	for deadline := time.Now().Add(heraldtest.Timeout); time.Now().Before(deadline); {
		_, rerr, err := c.Call("tester.events", map[string]any{})
		require.NoError(t, err)
		if rerr != nil {
			codes[rerr.Code]++
		} else if p := plugins(t, h)["tester"]; p.State == "running" && p.PID != before {
			break
		}
		time.Sleep(30 * time.Millisecond) // under limits.calls_per_second
	}
	require.NotZero(t, codes[-32050], "the restart window was observed: %v", codes)
	require.Len(t, codes, 1, "only -32050 while restarting: %v", codes)

	// A new version that passes its dry run but cannot start keeps the
	// channels, unavailable.
	reload(pluginBlock("tester", "internal/testplugins/tester", `  env = { TESTER_START_FAIL = "broken on purpose" }`)(t))
	waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "failed" })
	require.Equal(t, -32050, c.CallErr(t, "tester.events", map[string]any{}).Code)
	other := h.Dial(t, h.Token(t, "bob"))
	e := other.CallErr(t, "subscribe", map[string]any{"channels": []string{"tester:ok"}})
	require.Equal(t, -32050, e.Code, "%+v", e)
	require.Equal(t, "failed", plugins(t, h)["tester"].State)
	require.Equal(t, []string{"tester"}, plugins(t, h)["tester"].Prefixes)

	// The client's subscription survived; a good block brings it back.
	h.Publish(t, heraldtest.N("tester:ok", "e", "t", `{}`))
	require.Equal(t, "tester:ok", c.Notifications(t, 1)[0].Channel)
	reload(pluginBlock("tester", "internal/testplugins/tester", "")(t))
	waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" })
	c.MustCall(t, "tester.events", map[string]any{})
}

// Shutdown stops the plugins before the broker closes: what a plugin emits
// while it drains is still accepted into history.
func TestPluginEmitDuringDrainIsKept(t *testing.T) {
	out := filepath.Join(t.TempDir(), "drain")
	h := heraldtest.Start(t, heraldtest.Options{HCL: pluginBlock("tester", "internal/testplugins/tester",
		fmt.Sprintf("  env = { TESTER_DRAIN_FILE = %q }", out))(t)})
	waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" })
	h.Signal(t, syscall.SIGTERM)
	require.NoError(t, h.Wait(t, heraldtest.Timeout))
	got, err := os.ReadFile(out)
	require.NoError(t, err, "the plugin was drained")
	require.Equal(t, "ok 1", string(got), "the drain's emit reached history")
}

// A SIGHUP whose file fails a plugin's dry run (a typo in a running
// plugin's config block) once stopped the running plugin and left it
// failed, /readyz 503. The reload is checked whole first: each problem is
// logged once, at its place in the file, and nothing running is touched.
func TestSIGHUPWithABadPluginBlockKeepsTheRunningConfig(t *testing.T) {
	good := pluginBlock("chat", "plugins/chat", "  config {\n    entering_window = \"3s\"\n  }")(t)
	h := heraldtest.Start(t, heraldtest.Options{HCL: good})
	before := waitPlugin(t, h, "chat", func(p pluginStatus) bool { return p.State == "running" })
	edit := func(change func(string) string) string {
		cfg, err := os.ReadFile(h.ConfigPath)
		require.NoError(t, err)
		body := change(string(cfg))
		require.NoError(t, os.WriteFile(h.ConfigPath, []byte(body), 0o600))
		h.Signal(t, syscall.SIGHUP)
		return body
	}
	rewrite := func(from, to string) string {
		return edit(func(s string) string { return strings.Replace(s, from, to, 1) })
	}

	body := rewrite("entering_window", "entering_windw")
	want := fmt.Sprintf("%s:%d:5: plugin.chat.config.entering_windw: unknown key", h.ConfigPath, lineOf(t, body, "entering_windw"))
	h.WaitLog(t, want, heraldtest.Timeout)
	after := plugins(t, h)["chat"]
	require.Equal(t, "running", after.State)
	require.Equal(t, before.PID, after.PID, "the running plugin was not touched")
	status, _ := h.Do(t, http.MethodGet, "/readyz", nil, "", nil)
	require.Equal(t, http.StatusOK, status)

	// A core error too, with the plugin typo still there: the core's
	// error does not hide the plugin's (both are logged on this one
	// signal, as herald validate prints them), and each is logged once per
	// signal.
	edit(func(s string) string { return s + "delivery {\n  max_batch = 0\n}\n" })
	waitLogCount(t, h, "delivery.max_batch: must be at least 1", 1)
	waitLogCount(t, h, want, 2)
	rewrite("max_batch = 0", "max_batch = 64")
	waitLogCount(t, h, want, 3)
	rewrite("entering_windw", "entering_window")
	waitLogCount(t, h, "reload: plugins applied", 1)
	require.Equal(t, 1, strings.Count(h.Logs(), "delivery.max_batch: must be at least 1"), h.Logs())
	require.Equal(t, 3, strings.Count(h.Logs(), want), h.Logs())
	require.Equal(t, 4, strings.Count(h.Logs(), "config rejected"), "one line per problem per signal:\n%s", h.Logs())
	require.Equal(t, before.PID, plugins(t, h)["chat"].PID, "an unchanged block is not restarted")
}

// waitLogCount waits until herald's log holds s n times or more.
func waitLogCount(t *testing.T, h *heraldtest.Herald, s string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Count(h.Logs(), s) >= n },
		heraldtest.Timeout, 20*time.Millisecond, "log never showed %q %d times:\n%s", s, n, h.Logs())
}

// A SIGHUP that removes a plugin's block ends every subscription to its
// channels: each client holding some is told with a $server unsubscribed
// naming the removal, publishing there is refused as to any namespace no
// plugin owns, and the plugin added again later does not reach the old
// subscribers (it never authorized them).
func TestSIGHUPRemovedPluginEndsItsSubscriptions(t *testing.T) {
	tester := pluginBlock("tester", "internal/testplugins/tester", "")(t)
	h := heraldtest.Start(t, heraldtest.Options{HCL: tester})
	waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" })
	alice := h.Dial(t, h.Token(t, "alice"))
	alice.Subscribe(t, "tester:ok", "tester:ok2", "news")
	h.Publish(t, heraldtest.N("tester:ok", "e", "t", `{}`))
	require.Equal(t, "tester:ok", alice.Notifications(t, 1)[0].Channel)
	setPlugins := func(block string) {
		cfg, err := os.ReadFile(h.ConfigPath)
		require.NoError(t, err)
		body := strings.Replace(string(cfg), tester, block, 1)
		require.NotEqual(t, string(cfg), body)
		require.NoError(t, os.WriteFile(h.ConfigPath, []byte(body), 0o600))
		tester = block
		h.Signal(t, syscall.SIGHUP)
	}

	setPlugins("# tester removed\n")
	n := alice.Notifications(t, 1)[0]
	require.Equal(t, "$server unsubscribed", n.Channel+" "+n.Event)
	require.JSONEq(t, `{"channels":[
		{"channel":"tester:ok","reason":"plugin tester was removed from the config"},
		{"channel":"tester:ok2","reason":"plugin tester was removed from the config"}]}`, string(n.Object))
	waitLogCount(t, h, "reload: plugins applied", 1)
	require.NotContains(t, plugins(t, h), "tester")
	status, body := h.PublishRaw(t, heraldtest.N("tester:ok", "e", "t", `{}`), nil)
	require.Equal(t, http.StatusBadRequest, status, string(body))
	require.Contains(t, string(body), "no plugin owns the namespace")

	// Added again: it reaches the clients that subscribe anew, never the
	// old one. news follows tester:ok: in order, alice's next is news.
	setPlugins(pluginBlock("tester", "internal/testplugins/tester", "")(t))
	waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" })
	bob := h.Dial(t, h.Token(t, "bob"))
	bob.Subscribe(t, "tester:ok")
	h.Publish(t, heraldtest.N("tester:ok", "e", "t", `{}`))
	h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
	require.Equal(t, "tester:ok", bob.Notifications(t, 1)[0].Channel)
	require.Equal(t, "news", alice.Notifications(t, 1)[0].Channel)
	var un struct{ Unsubscribed []string }
	require.NoError(t, json.Unmarshal(alice.MustCall(t, "unsubscribe", map[string]any{"channels": []string{"tester:ok", "tester:ok2"}}), &un))
	require.Empty(t, un.Unsubscribed, "alice holds none of them any more")
}
