package main_test

import (
	"fmt"
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

	// A new version that cannot start keeps the channels, unavailable.
	reload(pluginBlock("tester", "internal/testplugins/tester", `  env = { TESTER_CONFIGURE_FAIL = "broken on purpose" }`)(t))
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
