package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/core/transport"
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
	acceptErrors  prometheus.Counter
	declarer      methodDeclarer
	// Operators' metrics (issue 17; docs/operations.md).
	deliveryLatency prometheus.Histogram
	publishLatency  *prometheus.HistogramVec
	slowCloses      *prometheus.CounterVec
	publishHTTP     prometheus.Observer
	publishPlugin   prometheus.Observer
	slowByReason    map[transport.SlowReason]prometheus.Counter
}

// latencyBuckets span a publish on loopback (a fraction of a millisecond)
// to a delivery held up by a slow reader (delivery.write_timeout's 10s).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Sources of a publish, the label of herald_publish_latency_seconds.
const (
	sourceHTTP   = "http"
	sourcePlugin = "plugin"
)

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
		acceptErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_accept_errors_total", Help: "Failed accepts of new HTTP and WebSocket connections on either listener (out of file descriptors, mostly), each retried."}),
		deliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_delivery_latency_seconds",
			Help:    "From a notification's acceptance to the write of the frame holding it, once per write from its oldest live notification; resumes and joins are not measured.",
			Buckets: latencyBuckets}),
		publishLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_publish_latency_seconds",
			Help:    "From a publish's acceptance (HTTP request, plugin emit) to its notifications being in history and queued to subscribers, by source.",
			Buckets: latencyBuckets}, []string{"source"}),
		slowCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_slow_consumer_closes_total", Help: "Connections closed for not reading, by reason: outbox_limit and outbox_bytes (4008), write_timeout."},
			[]string{"reason"}),
	}
	m.publishHTTP = m.publishLatency.WithLabelValues(sourceHTTP)
	m.publishPlugin = m.publishLatency.WithLabelValues(sourcePlugin)
	m.slowByReason = make(map[transport.SlowReason]prometheus.Counter)
	for _, r := range []transport.SlowReason{transport.SlowOutboxLimit, transport.SlowOutboxBytes, transport.SlowWriteTimeout} {
		m.slowByReason[r] = m.slowCloses.WithLabelValues(string(r))
	}
	m.reg.MustRegister(m.deliveryLatency, m.publishLatency, m.slowCloses)
	m.reg.MustRegister(m.connections, m.subscriptions, m.published, m.delivered, m.batchSize,
		m.slowConsumers, m.calls, m.callErrors, m.busy, m.acceptErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registerOutbox exports the bytes waiting in every connection's outbox,
// summed when scraped: counting them as they are queued would put a
// shared counter on every delivery.
func (m *metrics) registerOutbox(s *Server) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "herald_outbox_bytes", Help: "Bytes waiting in the outboxes of all connections (notifications, replies, control frames), as counted against delivery.outbox_bytes."},
		func() float64 {
			var total int
			s.eachSession(func(ss *session) { total += ss.conn.QueuedBytes() })
			return float64(total)
		}))
}

// Registerer is where other parts (the plugin host) add their metrics.
func (s *Server) Registerer() prometheus.Registerer { return s.metrics.reg }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Sent implements transport.Observer: a writer's turn at once, so that
// the histograms' cache lines are fetched once per turn.
func (m *metrics) Sent(s *transport.Sent) {
	for _, n := range s.Batches {
		m.batchSize.Observe(float64(n))
	}
	for _, d := range s.Latencies {
		m.deliveryLatency.Observe(d.Seconds())
	}
}

// SlowConsumer implements transport.Observer.
func (m *metrics) SlowConsumer(reason transport.SlowReason) {
	if reason != transport.SlowWriteTimeout {
		m.slowConsumers.Inc() // closed with 4008
	}
	if c, ok := m.slowByReason[reason]; ok {
		c.Inc()
	}
}

// observePublish records a publish's latency from its acceptance.
func (m *metrics) observePublish(source string, accepted time.Time) {
	o := m.publishHTTP
	if source == sourcePlugin {
		o = m.publishPlugin
	}
	o.Observe(time.Since(accepted).Seconds())
}

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
