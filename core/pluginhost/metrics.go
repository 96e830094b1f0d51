package pluginhost

import (
	"errors"
	"strconv"
	"time"

	"github.com/heraldhq/herald/core/rpc"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	up            *prometheus.GaugeVec
	restarts      *prometheus.CounterVec
	calls         *prometheus.CounterVec
	callErrors    *prometheus.CounterVec
	emitted       *prometheus.CounterVec
	emitBatches   *prometheus.CounterVec
	eventsDropped *prometheus.CounterVec
	emitsRefused  *prometheus.CounterVec
	resyncs       *prometheus.CounterVec
	// Follow (issue 14)
	followers      *prometheus.GaugeVec
	followersEnded *prometheus.CounterVec
	// Operators' metrics (issue 17)
	callLatency *prometheus.HistogramVec
	// State (issue 16)
	stateOps       *prometheus.CounterVec
	stateConflicts *prometheus.CounterVec
}

// callLatencyBuckets span a local gRPC round trip (a few hundred
// microseconds) to limits.call_timeout's default (10s).
var callLatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newMetrics(r prometheus.Registerer) *metrics {
	if r == nil {
		r = prometheus.NewRegistry()
	}
	m := &metrics{
		up: register(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_plugin_up",
			Help: "1 when the plugin is running and answers its liveness pings, 0 when it is starting, unresponsive, restarting, failed or stopped.",
		}, []string{"plugin"})),
		restarts: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_plugin_restarts_total",
			Help: "Restarts of a plugin after it exited or was killed.",
		}, []string{"plugin"})),
		calls: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_plugin_calls_total",
			Help: "Calls routed to a plugin, by method ($authorize for subscription checks).",
		}, []string{"plugin", "method"})),
		callErrors: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_plugin_call_errors_total",
			Help: "Calls to a plugin that ended in an error, by method and JSON-RPC code.",
		}, []string{"plugin", "method", "code"})),
		emitted: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_plugin_emitted_notifications_total",
			Help: "Notifications a plugin emitted that the core accepted.",
		}, []string{"plugin"})),
		emitBatches: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_plugin_emit_batches_total",
			Help: "Emit batches of a plugin that the core accepted (each one publish); emitted notifications over this is the batch size the SDK reached.",
		}, []string{"plugin"})),
		eventsDropped: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_plugin_events_dropped_total",
			Help: "Lifecycle events dropped because the plugin's queue was full (a resync follows).",
		}, []string{"plugin"})),
		emitsRefused: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_plugin_emits_refused_total",
			Help: "Notifications a plugin emitted outside its channels (its prefixes and emit_channels); each was refused with its whole batch.",
		}, []string{"plugin"})),
		resyncs: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_plugin_event_resyncs_total",
			Help: "Resyncs (Reset and a replay of the current connections) a plugin took because it had missed lifecycle events; not counting failed attempts, nor the replay at each start.",
		}, []string{"plugin"})),
		stateOps: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_plugin_state_operations_total",
			Help: "State calls (sdk.State) a plugin made, by operation: get, put, create, update, delete, list, watch.",
		}, []string{"plugin", "op"})),
		stateConflicts: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_plugin_state_conflicts_total",
			Help: "State writes refused because the key's revision moved on (compare-and-set lost to another writer).",
		}, []string{"plugin"})),
		followers: register(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_plugin_followers",
			Help: "Channel follows (Host.Follow) a plugin has open.",
		}, []string{"plugin"})),
		followersEnded: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_plugin_followers_dropped_total",
			Help: "Follows ended by the host because they fell behind their bounds.",
		}, []string{"plugin"})),
		callLatency: register(r, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_plugin_call_duration_seconds",
			Help:    "Time a plugin took to answer a call or a subscription check (the gRPC round trip), failed calls included.",
			Buckets: callLatencyBuckets,
		}, []string{"plugin"})),
	}
	return m
}

// setUp records whether a plugin runs, and makes its other per-plugin
// series exist from its first start (a restart count of 0 is an answer;
// a missing series is not).
func (m *metrics) setUp(plugin string, up float64) {
	m.up.WithLabelValues(plugin).Set(up)
	for _, v := range m.perPlugin() {
		v.WithLabelValues(plugin)
	}
	m.followers.WithLabelValues(plugin)
	m.callLatency.WithLabelValues(plugin)
}

// perPlugin lists the series labelled by the plugin alone, which setUp
// makes exist at 0 (those with more labels, such as a call's method or a
// State operation, exist from their first use).
func (m *metrics) perPlugin() []interface {
	WithLabelValues(...string) prometheus.Counter
} {
	return []interface {
		WithLabelValues(...string) prometheus.Counter
	}{m.restarts, m.emitted, m.emitBatches, m.eventsDropped, m.emitsRefused, m.resyncs, m.stateConflicts, m.followersEnded}
}

// forget drops the series of a plugin that was removed from the config.
func (m *metrics) forget(plugin string) {
	m.up.DeleteLabelValues(plugin)
	m.followers.DeleteLabelValues(plugin)
	m.callLatency.DeleteLabelValues(plugin)
}

// observeCall records how long a plugin took to answer.
func (m *metrics) observeCall(plugin string, started time.Time) {
	m.callLatency.WithLabelValues(plugin).Observe(time.Since(started).Seconds())
}

// register registers c, or reuses the collector already registered under
// the same name (several Managers on one registry, as in tests).
func register[C prometheus.Collector](r prometheus.Registerer, c C) C {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// callError counts a failed call by its code. The code label takes the
// contract's codes only, anything else "other": a label a plugin could
// choose would grow the series without bound.
func (m *metrics) callError(plugin, method string, code int) {
	label := "other"
	if knownCodes[code] {
		label = strconv.Itoa(code)
	}
	m.callErrors.WithLabelValues(plugin, method, label).Inc()
}

// knownCodes are the codes of the contract's table (CONTRACT.md section 3).
var knownCodes = map[int]bool{
	rpc.CodeParseError: true, rpc.CodeInvalidRequest: true, rpc.CodeMethodNotFound: true,
	rpc.CodeInvalidParams: true, rpc.CodeInternal: true, rpc.CodeUnauthenticated: true,
	rpc.CodeForbidden: true, rpc.CodeUnknownNamespace: true, rpc.CodeLimitExceeded: true,
	rpc.CodeRateLimited: true, rpc.CodePluginUnavailable: true,
}
