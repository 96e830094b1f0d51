package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/core/broker/natsbroker"
	"github.com/heraldhq/herald/core/cluster"
)

// registerClusterMetrics exports what the NATS broker and the cluster node
// count (docs/operations.md lists them).
func registerClusterMetrics(r prometheus.Registerer, b *natsbroker.Broker, n *cluster.Node) {
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	bs := func(f func(natsbroker.Stats) int64) func() float64 {
		return func() float64 { return float64(f(b.Stats())) }
	}
	cs := func(f func(cluster.Stats) uint64) func() float64 {
		return func() float64 { return float64(f(n.Stats())) }
	}
	r.MustRegister(
		gauge("herald_cluster_nodes", "Herald nodes this node knows to be alive, itself included.",
			func() float64 { return float64(len(n.Nodes())) }),
		gauge("herald_nats_watched_channels", "Channels this node receives from NATS (it has subscribers on them).",
			func() float64 { return float64(b.Stats().Watched) }),
		counter("herald_nats_publish_conflicts_total", "Publish attempts that lost a race with another node for a channel's next seq and went again.",
			bs(func(s natsbroker.Stats) int64 { return s.Conflicts })),
		counter("herald_nats_duplicates_total", "Publishes answered with an earlier one's publications (Idempotency-Key seen by JetStream).",
			bs(func(s natsbroker.Stats) int64 { return s.Duplicates })),
		counter("herald_nats_gap_fills_total", "Reads of the stream to fill what a watched channel missed live (a dropped message, a reconnection).",
			bs(func(s natsbroker.Stats) int64 { return s.GapFills })),
		counter("herald_nats_tail_checks_total", "Tail checks of watched channels (after a watch, a reconnection; one request per 256 channels).",
			bs(func(s natsbroker.Stats) int64 { return s.TailChecks })),
		counter("herald_cluster_presence_requests_total", "Presence calls that asked the other nodes.",
			cs(func(s cluster.Stats) uint64 { return s.PresenceGathered })),
		counter("herald_cluster_presence_incomplete_total", "Presence calls answered before every node did (a node slow, dead or unreachable).",
			cs(func(s cluster.Stats) uint64 { return s.PresenceIncomplete })),
	)
}
