package server

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/sdk/codes"
)

type metrics struct {
	reg           *prometheus.Registry
	connections   prometheus.Gauge
	subscriptions prometheus.Gauge
	published     prometheus.Counter
	delivered     prometheus.Counter
	batchSize     prometheus.Histogram
	slowConsumers prometheus.Counter
	calls         *prometheus.CounterVec
	callErrors    *prometheus.CounterVec
	busy          prometheus.Gauge
	declarer      methodDeclarer
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_connections", Help: "Open WebSocket connections."}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_subscriptions", Help: "Channel subscriptions of all connections."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_notifications_published_total", Help: "Notifications accepted into channel history."}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_notifications_delivered_total", Help: "Notifications queued to subscribed connections."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herald_batch_size", Help: "Notifications per onNotificationReceived call.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_outbox_dropped_total", Help: "Connections closed with 4008 because their outbox passed delivery.outbox_limit."}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_rpc_calls_total", Help: "Client and backend calls by method."}, []string{"method"}),
		callErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_rpc_errors_total", Help: "Failed calls by method and error code."}, []string{"method", "code"}),
		busy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_servers_busy", Help: "1 while the server signals servers_busy on the config channel."}),
	}
	m.reg.MustRegister(m.connections, m.subscriptions, m.published, m.delivered, m.batchSize,
		m.slowConsumers, m.calls, m.callErrors, m.busy,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registerer is where other parts (the plugin host) add their metrics.
func (s *Server) Registerer() prometheus.Registerer { return s.metrics.reg }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// BatchSent implements transport.Observer.
func (m *metrics) BatchSent(n int) { m.batchSize.Observe(float64(n)) }

// SlowConsumer implements transport.Observer.
func (m *metrics) SlowConsumer() { m.slowConsumers.Inc() }

func (m *metrics) observeCall(method string, err *rpc.Error) {
	method = m.methodLabel(method)
	m.calls.WithLabelValues(method).Inc()
	if err != nil {
		m.callErrors.WithLabelValues(method, codeLabel(err.Code)).Inc()
	}
}

// codeLabel keeps the contract's codes and folds any other (a plugin's own
// codes are its business, and unbounded) into "other".
func codeLabel(code int) string {
	switch code {
	case codes.ParseError, codes.InvalidRequest, codes.MethodNotFound, codes.InvalidParams, codes.Internal,
		codes.Unauthenticated, codes.Forbidden, codes.UnknownNamespace, codes.LimitExceeded,
		codes.RateLimited, codes.PluginUnavailable:
		return strconv.Itoa(code)
	}
	return otherMethod
}

var coreMethods = map[string]bool{"hello": true, "authenticate": true, "subscribe": true, "unsubscribe": true, "presence": true, "ping": true}

// otherMethod labels every call whose method is neither the core's nor
// declared by a plugin (the names clients invent), and every error code
// outside the contract's.
const otherMethod = "other"

// methodDeclarer is the plugin host's knowledge of the plugins' declared
// methods (pluginhost.Manager), kept while a plugin is down.
type methodDeclarer interface {
	Declares(plugin, method string) bool
}

// setDeclarer tells the metrics which plugin methods exist.
func (m *metrics) setDeclarer(p any) {
	if d, ok := p.(methodDeclarer); ok {
		m.declarer = d
	}
}

// methodLabel keeps the metrics' label set bounded by what the operator
// deployed: core methods and the plugins' declared methods keep their
// name; anything else, whatever the error (unknown, plugin down, rate
// limited), is "other".
func (m *metrics) methodLabel(method string) string {
	if coreMethods[method] {
		return method
	}
	if plugin, name, ok := strings.Cut(method, "."); ok && m.declarer != nil && m.declarer.Declares(plugin, name) {
		return method
	}
	return otherMethod
}

// registerHistory exports what the memory broker holds: the history
// budget (history.max_bytes), the bytes in use, the channels with state,
// and what the budget made it drop.
func (m *metrics) registerHistory(stats func() broker.MemoryStats) {
	gauge := func(name, help string, f func(broker.MemoryStats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f(stats())) })
	}
	counter := func(name, help string, f func(broker.MemoryStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(stats())) })
	}
	m.reg.MustRegister(
		gauge("herald_history_max_bytes", "The bound on history memory (history.max_bytes).",
			func(s broker.MemoryStats) int64 { return s.MaxBytes }),
		gauge("herald_history_bytes", "History memory in use: encoded notifications plus a fixed overhead each.",
			func(s broker.MemoryStats) int64 { return s.Bytes }),
		gauge("herald_history_channels", "Channels the broker keeps state for (those that had a publication and were not forgotten).",
			func(s broker.MemoryStats) int64 { return s.Channels }),
		counter("herald_history_evicted_channels_total", "Channels whose history was dropped (and epoch changed) to stay under history.max_bytes.",
			func(s broker.MemoryStats) int64 { return s.EvictedStreams }),
		counter("herald_history_evicted_bytes_total", "History bytes dropped to stay under history.max_bytes.",
			func(s broker.MemoryStats) int64 { return s.EvictedBytes }),
	)
}
