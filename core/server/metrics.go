package server

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldhq/herald/core/rpc"
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
	method = methodLabel(method, err)
	m.calls.WithLabelValues(method).Inc()
	if err != nil {
		m.callErrors.WithLabelValues(method, strconv.Itoa(err.Code)).Inc()
	}
}

var coreMethods = map[string]bool{"hello": true, "authenticate": true, "subscribe": true, "unsubscribe": true, "presence": true, "ping": true}

// methodLabel keeps the metric's label set bounded: a method that was not
// found (names clients invent) is counted as "unknown".
func methodLabel(method string, err *rpc.Error) string {
	if coreMethods[method] {
		return method
	}
	if err != nil && (err.Code == rpc.CodeMethodNotFound || err.Code == rpc.CodeUnknownNamespace || err.Code == rpc.CodeRateLimited || err.Code == rpc.CodeUnauthenticated) {
		return "unknown"
	}
	return method
}
