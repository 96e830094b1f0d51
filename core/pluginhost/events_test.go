package pluginhost_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// eventsOf reads what the tester applied since its last reset.
func eventsOf(t *testing.T, m *pluginhost.Manager, plugin string) []map[string]any {
	t.Helper()
	res, err := m.Call(bg, plugin, "events", backend, nil)
	require.NoError(t, err)
	var evs []map[string]any
	require.NoError(t, json.Unmarshal(res, &evs))
	return evs
}

func onlineOf(t *testing.T, m *pluginhost.Manager, plugin string) []string {
	t.Helper()
	res, err := m.Call(bg, plugin, "online", backend, nil)
	require.NoError(t, err)
	var users []string
	require.NoError(t, json.Unmarshal(res, &users))
	return users
}

// replayed waits until the tester applied the whole replay of its start
// (reset, connected c1, subscribed c1), so that a stall armed next hits a
// live event, not the end of the replay.
func replayed(t *testing.T, m *pluginhost.Manager) {
	t.Helper()
	require.Eventually(t, func() bool { return len(eventsOf(t, m, "tester")) == 3 }, 10*time.Second, 5*time.Millisecond)
}

func stall(t *testing.T, m *pluginhost.Manager, count int, d time.Duration) {
	t.Helper()
	params, _ := json.Marshal(map[string]any{"count": count, "ms": d.Milliseconds()})
	_, err := m.Call(bg, "tester", "stallEvents", backend, params)
	require.NoError(t, err)
}

// A delivery that fails (here: the plugin's hook does not finish within the
// call timeout and gives the event up) is retried, in order: the event is
// not lost, and later events come after it.
func TestLifecycleEventsRetriedInOrder(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	core.connect("c1", "alice", "tester:room")
	reg := prometheus.NewRegistry()
	m := newManager(t, core, func(o *pluginhost.Options) { o.CallTimeout = 5 * time.Second; o.Registerer = reg })
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	replayed(t, m)

	stall(t, m, 1, time.Minute) // the next event hangs until the host gives it up (a generous call timeout: a loaded machine must not turn the retry into a resync)
	m.Notify(pluginhost.Event{Kind: pluginhost.Disconnected, ConnID: "c1", UserID: "alice"})
	m.Notify(pluginhost.Event{Kind: pluginhost.Connected, ConnID: "c2", UserID: "bob"})
	var on []string
	require.Eventually(t, func() bool {
		on = onlineOf(t, m, "tester")
		return len(on) == 1 && on[0] == "bob"
	}, 20*time.Second, 10*time.Millisecond, "alice's disconnect must not be lost")
	require.Equal(t, []string{"bob"}, on)
	evs := eventsOf(t, m, "tester")
	require.Equal(t, "disconnected", evs[len(evs)-2]["Kind"], "in order: %v", evs)
	require.Equal(t, "connected", evs[len(evs)-1]["Kind"])
	require.Equal(t, 0.0, counterOr0(t, reg, "herald_plugin_event_resyncs_total", "tester"), "a retry sufficed")
}

// A plugin that keeps failing past the call timeout really missed events:
// it gets a resync (reset and the current connections), and its view
// converges on the truth.
func TestLifecycleEventsResyncAfterMissedEvents(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	core.connect("c1", "alice", "tester:room")
	reg := prometheus.NewRegistry()
	m := newManager(t, core, func(o *pluginhost.Options) { o.CallTimeout = time.Second; o.Registerer = reg })
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	replayed(t, m)

	stall(t, m, 4, time.Minute)
	core.mu.Lock()
	delete(core.conns, "c1")
	core.mu.Unlock()
	m.Notify(pluginhost.Event{Kind: pluginhost.Disconnected, ConnID: "c1", UserID: "alice"})
	core.connect("c2", "bob")
	m.Notify(pluginhost.Event{Kind: pluginhost.Connected, ConnID: "c2", UserID: "bob"})
	var on []string
	require.Eventually(t, func() bool {
		on = onlineOf(t, m, "tester")
		return len(on) == 1 && on[0] == "bob"
	}, 30*time.Second, 10*time.Millisecond, "the plugin converges")
	require.Equal(t, []string{"bob"}, on)
	evs := eventsOf(t, m, "tester")
	require.Equal(t, "reset", evs[0]["Kind"], "through a resync: %v", evs)
	require.GreaterOrEqual(t, counterOr0(t, reg, "herald_plugin_event_resyncs_total", "tester"), 1.0)
}

func counterOr0(t *testing.T, reg *prometheus.Registry, name, plugin string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return metric(t, reg, name, plugin)
		}
	}
	return 0
}

// herald_plugin_event_resyncs_total counts the resyncs that repaired the
// plugin's state, not the attempts: here several attempts fail (the reset
// they start with stalls past the call timeout) before one is taken, which
// is one resync.
func TestLifecycleEventResyncsCountedOnceTaken(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	core.connect("c1", "alice", "tester:room")
	reg := prometheus.NewRegistry()
	m := newManager(t, core, func(o *pluginhost.Options) { o.CallTimeout = time.Second; o.Registerer = reg })
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	replayed(t, m)

	// The live event's delivery stalls twice (its first attempt and its
	// retry, which ends past the call timeout after the first failure):
	// a resync follows, whose attempts stall too until the stalls are
	// used up. An attempt that fails uses one stall per event of its batch
	// (reset, c1 connected and subscribed, c2 connected: the hooks after
	// the one that stalled find the deadline passed), so 4+4+1 more make
	// three attempts fail.
	stall(t, m, 2+4+4+1, time.Minute)
	core.connect("c2", "bob")
	m.Notify(pluginhost.Event{Kind: pluginhost.Connected, ConnID: "c2", UserID: "bob"})
	require.Eventually(t, func() bool {
		on := onlineOf(t, m, "tester")
		return len(on) == 2 && on[0] == "alice" && on[1] == "bob"
	}, 60*time.Second, 10*time.Millisecond, "the plugin converges")
	require.Equal(t, "reset", eventsOf(t, m, "tester")[0]["Kind"], "through a resync")
	require.Eventually(t, func() bool { return counterOr0(t, reg, "herald_plugin_event_resyncs_total", "tester") >= 1 },
		10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1.0, counterOr0(t, reg, "herald_plugin_event_resyncs_total", "tester"), "one resync, however many attempts")
}
