package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/core/broker"
)

// overloadState tracks the servers_busy signal of the config channel.
type overloadState struct {
	busy atomic.Bool
	// clustered: the cluster decides when the config channel hears of a
	// change (SetClusterOverload); this node only measures its own load.
	clustered atomic.Bool
}

// Hysteresis: once busy, the server reports normal only when every measure
// is below this share of its threshold, so a load hovering at a threshold
// does not flap.
const overloadRecovery = 0.8

// overloadSample is how many connections' outboxes the overload check
// reads each tick. Reading every connection's (taking its lock) each second
// cost ~4 % of the CPU of per-user channels at 10,000 connections, most of
// it while publishers held those locks; a sample of this size estimates the
// mean fill within a few hundredths, which is what busy_outbox_ratio
// compares. Up to this many connections the count is exact.
const overloadSample = 256

// queuer is what the overload check reads of a connection: its queued
// items (transport.Conn.Queued).
type queuer interface{ Queued() int }

// load measures what the overload thresholds compare against: the
// connection count, and the mean fill of the outboxes of a sample of them
// (sampleOutboxRatio).
func (s *Server) load() (connections int, outboxRatio float64) {
	s.sessionsMu.RLock()
	connections = len(s.sessions)
	sample := sampleOf(s.sessions, overloadSample, func(ss *session) queuer { return ss.conn })
	s.sessionsMu.RUnlock()
	// The outboxes are read without sessionsMu: connections opening and
	// closing do not wait for them.
	return connections, sampleOutboxRatio(sample, s.live().Delivery.OutboxLimit)
}

// sampleOf returns what f makes of at most n values of m. Go's map
// iteration starts at a random place, and sessions are placed by the hash
// of their id: the first n are a different sample on each call, in no
// order of arrival.
func sampleOf[K comparable, V, T any](m map[K]V, n int, f func(V) T) []T {
	out := make([]T, 0, min(len(m), n))
	for _, v := range m {
		if len(out) == n {
			break
		}
		out = append(out, f(v))
	}
	return out
}

// sampleOutboxRatio is the queued items of sample against what their
// outboxes hold (limit items each); 0 for no sample or no limit.
func sampleOutboxRatio(sample []queuer, limit int) float64 {
	if len(sample) == 0 || limit <= 0 {
		return 0
	}
	queued := 0
	for _, q := range sample {
		queued += q.Queued()
	}
	return float64(queued) / float64(len(sample)*limit)
}

// checkOverload publishes servers_busy or servers_normal on a change.
func (s *Server) checkOverload(ctx context.Context) {
	conns, ratio := s.load()
	th := s.live().Overload
	over := conns >= th.BusyConnections || ratio >= th.BusyOutboxRatio
	under := float64(conns) < overloadRecovery*float64(th.BusyConnections) && ratio < overloadRecovery*th.BusyOutboxRatio
	event := ""
	busy := s.overload.busy.Load()
	switch {
	case !busy && over:
		s.overload.busy.Store(true)
		event = "servers_busy"
		s.metrics.busy.Set(1)
	case busy && under:
		s.overload.busy.Store(false)
		event = "servers_normal"
		s.metrics.busy.Set(0)
	}
	if event == "" {
		return
	}
	s.log.Warn("load signal", "event", event, "connections", conns, "outbox_ratio", ratio)
	if !s.overload.clustered.Load() {
		_ = s.publishLoadSignal(ctx, event == "servers_busy") // logged; the next change is published anyway
	}
}

// LocalBusy says whether this node's load passed an overload threshold
// (and has not come back under them with the hysteresis).
func (s *Server) LocalBusy() bool { return s.overload.busy.Load() }

// SetClusterOverload hands the config channel's busy/normal signal to the
// cluster: this node goes on measuring its load (LocalBusy) but publishes
// nothing itself; the cluster calls PublishLoadSignal, on one node, when
// the cluster as a whole flips. Call it before Serve.
func (s *Server) SetClusterOverload() { s.overload.clustered.Store(true) }

// PublishLoadSignal publishes servers_busy (busy) or servers_normal on the
// config channel.
func (s *Server) PublishLoadSignal(ctx context.Context, busy bool) error {
	return s.publishLoadSignal(ctx, busy)
}

func (s *Server) publishLoadSignal(ctx context.Context, busy bool) error {
	event := "servers_normal"
	if busy {
		event = "servers_busy"
	}
	_, err := s.publish(ctx, []broker.Notification{{
		Channel: ConfigChannel, Event: event, ObjectType: "config",
		Object: []byte(`{"type":"` + event + `"}`),
	}})
	if err != nil {
		s.log.Error("publish load signal", "error", err)
	}
	return err
}

// watchOverload checks the load every interval until ctx ends.
func (s *Server) watchOverload(ctx context.Context) {
	t := time.NewTicker(s.overloadInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkOverload(ctx)
		}
	}
}

func (s *Server) overloadInterval() time.Duration { return time.Second }
