package main_test

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// A plugin that hangs (SIGSTOPped: its process lives, it answers nothing)
// fails its calls with 503/-32050 naming the timeout, refuses
// subscriptions to its channels with -32050, is named unresponsive by
// /readyz (503) with herald_plugin_up 0, and is then killed and restarted:
// it answers again and /readyz is 200.
func TestHungPluginIsUnavailableThenRestarted(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		HCL: "limits {\n  call_timeout = \"1s\"\n}\n" + pluginBlock("echo", "examples/echo-plugin", "")(t),
	})
	pid := waitPlugin(t, h, "echo", func(p pluginStatus) bool { return p.State == "running" }).PID
	require.NotZero(t, pid)
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	t.Cleanup(func() {
		if plugins(t, h)["echo"].PID == pid {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	require.Eventually(t, func() bool { return heraldtest.AllThreadsStopped(t, pid) }, heraldtest.Timeout, time.Millisecond)

	status, body := h.Do(t, http.MethodPost, "/v1/plugins/echo/say", map[string]any{"text": "hi", "user": "alice"}, heraldtest.APIKey, nil)
	require.Equal(t, http.StatusServiceUnavailable, status, string(body))
	require.Contains(t, string(body), "-32050")
	require.Contains(t, string(body), `plugin \"echo\" did not answer say within limits.call_timeout (1s)`)

	alice := h.Dial(t, h.Token(t, "alice"))
	e := alice.CallErr(t, "subscribe", map[string]any{"channels": []string{"echo:alice"}})
	require.Contains(t, string(e.Data), "-32050", "%s", e.Data)
	require.Contains(t, string(e.Data), "did not answer authorize within limits.call_timeout (1s)")

	var ready []byte
	require.Eventually(t, func() bool {
		var st int
		st, ready = h.Do(t, http.MethodGet, "/readyz", nil, "", nil)
		return st == http.StatusServiceUnavailable
	}, heraldtest.Timeout, 20*time.Millisecond, "/readyz stays 200 while the plugin hangs")
	require.Contains(t, string(ready), "plugin echo: unresponsive")
	require.Contains(t, string(ready), "liveness pings")
	require.Equal(t, 0.0, metric(t, h, `herald_plugin_up{plugin="echo"}`))

	var back pluginStatus
	require.Eventually(t, func() bool {
		back = plugins(t, h)["echo"]
		return back.State == "running" && back.Restarts >= 1
	}, 60*time.Second, 20*time.Millisecond, "the hung plugin is never restarted: %+v", back)
	require.NotEqual(t, pid, back.PID)
	status, body = h.Do(t, http.MethodGet, "/readyz", nil, "", nil)
	require.Equal(t, 200, status, string(body))
	require.Equal(t, 1.0, metric(t, h, `herald_plugin_up{plugin="echo"}`))
	require.Equal(t, 1.0, metric(t, h, `herald_plugin_restarts_total{plugin="echo"}`))
	alice.Subscribe(t, "echo:alice")
	status, body = h.Do(t, http.MethodPost, "/v1/plugins/echo/say", map[string]any{"text": "back", "user": "alice"}, heraldtest.APIKey, nil)
	require.Equal(t, 200, status, string(body))
	require.JSONEq(t, `{"text":"back","user_id":"alice"}`, string(alice.Notifications(t, 1)[0].Object))
}

// belowTheDrain bounds a stop that must not drain: stopping a plugin
// otherwise asks it to drain for up to 10 s (the plugin host's
// StopTimeout) and then gives go-plugin 2 s more, so a stop that waited
// for an unresponsive plugin's drain takes 10 s at least. A kill takes
// milliseconds.
const belowTheDrain = 5 * time.Second

// A plugin that does not answer its liveness pings would not drain either:
// a SIGHUP that removes it, and a SIGTERM, kill its process group at once
// (a WARN line says why) instead of waiting for the drain's bound.
func TestUnresponsivePluginIsKilledWithoutADrain(t *testing.T) {
	echo := pluginBlock("echo", "examples/echo-plugin", "")(t)
	h := heraldtest.Start(t, heraldtest.Options{
		HCL: "limits {\n  call_timeout = \"1s\"\n}\n" + echo + pluginBlock("tester", "internal/testplugins/tester", "")(t),
	})
	gone := func(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }
	hang := func(name string) int {
		pid := waitPlugin(t, h, name, func(p pluginStatus) bool { return p.State == "running" }).PID
		require.NotZero(t, pid)
		require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
		t.Cleanup(func() {
			if !gone(pid) {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		})
		require.Eventually(t, func() bool { return heraldtest.AllThreadsStopped(t, pid) }, heraldtest.Timeout, time.Millisecond)
		waitPlugin(t, h, name, func(p pluginStatus) bool { return p.State == "unresponsive" })
		return pid
	}

	pid := hang("echo")
	cfg, err := os.ReadFile(h.ConfigPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(h.ConfigPath, []byte(strings.Replace(string(cfg), echo, "", 1)), 0o600))
	h.Signal(t, syscall.SIGHUP)
	h.WaitLog(t, "reload: plugins applied", belowTheDrain)
	require.True(t, gone(pid), "the removed plugin's process is gone (reaped)")
	require.NotContains(t, plugins(t, h), "echo")
	require.Contains(t, h.Logs(), "plugin does not answer liveness pings, so it would not drain: killing its process group to stop it: plugin=echo")

	pid = hang("tester")
	h.Signal(t, syscall.SIGTERM)
	require.NoError(t, h.Wait(t, belowTheDrain))
	require.True(t, gone(pid), "the plugin's process is gone (reaped)")
	require.Contains(t, h.Logs(), "killing its process group to stop it: plugin=tester")
}
