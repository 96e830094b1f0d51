package pluginhost_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
)

// A plugin's per-plugin series exist at 0 from its first start: a query
// for them answers 0, not "no data", before anything happened.
func TestPluginSeriesExistFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newManager(t, newRecorder(), func(o *pluginhost.Options) { o.Registerer = reg })
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "echo", "echo", nil)}))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	have := map[string]bool{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "plugin" && l.GetValue() == "echo" {
					have[mf.GetName()] = true
				}
			}
		}
	}
	for _, name := range []string{
		"herald_plugin_up", "herald_plugin_restarts_total", "herald_plugin_emitted_notifications_total",
		"herald_plugin_emit_batches_total", "herald_plugin_events_dropped_total", "herald_plugin_emits_refused_total",
		"herald_plugin_event_resyncs_total", "herald_plugin_state_conflicts_total", "herald_plugin_followers",
		"herald_plugin_followers_dropped_total", "herald_plugin_call_duration_seconds",
	} {
		require.True(t, have[name], "%s has no series for a plugin that just started", name)
	}
	require.Equal(t, 0.0, metric(t, reg, "herald_plugin_emits_refused_total", "echo"))
}
