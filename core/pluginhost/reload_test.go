package pluginhost_test

import (
	"testing"
	"time"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/stretchr/testify/require"
)

// A changed plugin answers -32050 (retry) while it restarts, never -32004 as
// if it were unknown; and if its new version cannot start, it keeps its
// prefixes and keeps answering -32050 until a reload fixes it.
func TestChangedPluginStaysOwnedWhileRestartingOrFailed(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))

	slow := block(t, "tester", "tester", map[string]string{"TESTER_CONFIGURE_DELAY": "1500ms"})
	applied := make(chan error, 1)
	go func() { applied <- m.Apply(bg, []config.Plugin{slow}) }()
	codes := map[int]int{}
	for done := false; !done; {
		select {
		case err := <-applied:
			require.NoError(t, err)
			done = true
		default:
			if _, err := m.Call(bg, "tester", "events", backend, nil); err != nil {
				codes[rpcCode(t, err)]++
			}
			owner, ok := m.Owner("tester:x")
			require.True(t, ok, "the prefix stays owned during the restart")
			require.Equal(t, "tester", owner)
			time.Sleep(5 * time.Millisecond)
		}
	}
	require.NotZero(t, codes[rpc.CodePluginUnavailable], "the restart window was observed: %v", codes)
	require.Equal(t, map[int]int{rpc.CodePluginUnavailable: codes[rpc.CodePluginUnavailable]}, codes, "only -32050 while restarting")
	require.Equal(t, pluginhost.StateRunning, statusOf(m, "tester").State)

	broken := block(t, "tester", "tester", map[string]string{"TESTER_CONFIGURE_FAIL": "bad config"})
	require.ErrorContains(t, m.Apply(bg, []config.Plugin{broken}), "bad config")
	st := statusOf(m, "tester")
	require.Equal(t, pluginhost.StateFailed, st.State)
	require.Equal(t, []string{"tester"}, st.Prefixes)
	owner, ok := m.Owner("tester:x")
	require.True(t, ok, "a plugin whose new version failed keeps its prefixes")
	require.Equal(t, "tester", owner)
	_, err := m.Call(bg, "tester", "events", backend, nil)
	require.Equal(t, rpc.CodePluginUnavailable, rpcCode(t, err))
	_, err = m.Authorize(bg, "tester", pluginhost.Caller{UserID: "a"}, []string{"tester:ok"})
	require.Equal(t, rpc.CodePluginUnavailable, rpcCode(t, err))

	// Another plugin cannot take its prefixes meanwhile.
	thief := block(t, "thief", "tester", map[string]string{"TESTER_ROUTE": "/thief/{id}"})
	err = m.Apply(bg, []config.Plugin{broken, thief})
	require.ErrorContains(t, err, `claims channel prefix "tester", which plugin "tester" claims too`)

	// A reload with a good block fixes it.
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	require.Equal(t, pluginhost.StateRunning, statusOf(m, "tester").State)
}

// Preflight checks what a reload would start, and touches nothing: a bad
// new block or a clash with a running plugin is reported, the running
// plugin keeps its process.
func TestPreflightTouchesNothing(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)
	tester := block(t, "tester", "tester", nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{tester}))
	pid := statusOf(m, "tester").PID

	require.NoError(t, m.Preflight(bg, []config.Plugin{tester}))
	broken := block(t, "tester", "tester", map[string]string{"TESTER_CONFIGURE_FAIL": "bad config"})
	require.ErrorContains(t, m.Preflight(bg, []config.Plugin{broken}), "bad config")
	thief := block(t, "thief", "tester", map[string]string{"TESTER_ROUTE": "/thief/{id}"})
	require.ErrorContains(t, m.Preflight(bg, []config.Plugin{tester, thief}),
		`plugin "thief": command: claims channel prefix "tester", which plugin "tester" claims too`)
	require.NoError(t, m.Preflight(bg, []config.Plugin{block(t, "tester", "tester", map[string]string{"TESTER_VERSION": "2"})}))

	st := statusOf(m, "tester")
	require.Equal(t, pluginhost.StateRunning, st.State)
	require.Equal(t, pid, st.PID)
	require.Len(t, m.Status(), 1)
}

// A plugin removed from the config has its subscriptions ended
// (Core.PluginRemoved, with its prefixes) once it stopped and its prefixes
// are unowned, and before a plugin of the same Apply may claim them: that
// one must not inherit subscribers it never authorized. A plugin that is
// restarted because its block changed, or that crashed, keeps them.
func TestRemovedPluginEndsItsSubscriptions(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	core.connect("c1", "alice", "tester:ok", "news")
	m := newManager(t, core, nil)
	tester := block(t, "tester", "tester", nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{tester}))

	changed := block(t, "tester", "tester", map[string]string{"TESTER_VERSION": "2.0.0"})
	require.NoError(t, m.Apply(bg, []config.Plugin{changed}))
	_, err := m.Call(bg, "tester", "crash", backend, nil)
	require.Error(t, err)
	waitRunning(t, m, "tester", 1)
	require.Empty(t, core.removals(), "a changed or crashed plugin keeps its subscribers")

	// Removed, and its prefix claimed by another block in the same reload.
	type seen struct {
		owned bool
		state pluginhost.State
	}
	at := make(chan seen, 1)
	core.mu.Lock()
	core.onRemoved = func(string, []string) {
		_, owned := m.Owner("tester:ok")
		at <- seen{owned, statusOf(m, "tester").State}
	}
	core.mu.Unlock()
	thief := block(t, "thief", "tester", map[string]string{"TESTER_ROUTE": "/thief/{id}"})
	require.NoError(t, m.Apply(bg, []config.Plugin{thief}))
	require.Equal(t, []string{"tester tester"}, core.removals())
	require.Equal(t, seen{owned: false, state: ""}, <-at, "called once tester is gone, before thief claims its prefix")
	owner, ok := m.Owner("tester:ok")
	require.True(t, ok)
	require.Equal(t, "thief", owner)

	require.NoError(t, m.Apply(bg, nil))
	require.Equal(t, []string{"tester tester", "thief tester"}, core.removals())
}

// A plugin that a reload restarts with a manifest that no longer claims a
// prefix has the subscriptions to that prefix's channels ended
// (Core.PrefixesDropped): nothing of its would reach them any more, and a
// plugin that claims it later must not inherit them. Prefixes it keeps keep
// their subscribers.
func TestChangedPluginThatDropsAPrefixEndsItsSubscriptions(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	m := newManager(t, core, nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", map[string]string{"TESTER_PREFIX": "old"})}))
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", map[string]string{"TESTER_PREFIX": "old", "TESTER_VERSION": "2.0.0"})}))
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", map[string]string{"TESTER_PREFIX": "new"})}))
	core.mu.Lock()
	dropped := append([]string(nil), core.dropped...)
	core.mu.Unlock()
	require.Equal(t, []string{"tester old"}, dropped, "only the reload that dropped the prefix")
	require.Empty(t, core.removals())
	_, owned := m.Owner("old:x")
	require.False(t, owned)
}
