package transport_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/transport"
)

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu        sync.Mutex
	calls     int // Sent calls
	batches   []int
	latencies []time.Duration
	slow      []transport.SlowReason
}

func (r *recorder) SlowConsumer(reason transport.SlowReason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slow = append(r.slow, reason)
}

func (r *recorder) Sent(s *transport.Sent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.batches = append(r.batches, s.Batches...)
	r.latencies = append(r.latencies, s.Latencies...)
}

func (r *recorder) got() ([]time.Duration, []transport.SlowReason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.latencies...), append([]transport.SlowReason(nil), r.slow...)
}

// A written frame is measured from the acceptance of its oldest live
// publication; a missed one (a resume's) and one without an accept time
// are not measured at all.
func TestDeliveryLatencyIsMeasuredFromAcceptance(t *testing.T) {
	rec := &recorder{}
	opts := &transport.Options{MaxBatch: 1, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 5 * time.Second, Observer: rec}
	p := newRawPair(t, opts)

	missed := pubOf(1, `{}`)
	missed.Accepted = time.Now().Add(-time.Hour)
	p.conn.DeliverMissed(missed)
	require.Equal(t, []uint64{1}, batchSeqs(t, p.client))
	p.conn.Deliver(pubOf(2, `{}`)) // no accept time: herald's own
	require.Equal(t, []uint64{2}, batchSeqs(t, p.client))
	lat, _ := rec.got()
	require.Empty(t, lat, "a missed publication or one without an accept time was measured")

	live := pubOf(3, `{}`)
	live.Accepted = time.Now().Add(-time.Minute)
	p.conn.Deliver(live)
	require.Equal(t, []uint64{3}, batchSeqs(t, p.client))
	require.Eventually(t, func() bool { lat, _ = rec.got(); return len(lat) == 1 }, 10*time.Second, time.Millisecond)
	require.GreaterOrEqual(t, lat[0], time.Minute, "measured from acceptance, a minute ago")
}

// A client that never reads is closed with a reason the metrics can tell
// apart: too many items, or too many bytes.
func TestSlowConsumerReasons(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   func(*recorder) *transport.Options
		reason transport.SlowReason
	}{
		{"items", func(r *recorder) *transport.Options {
			return &transport.Options{MaxBatch: 128, MaxDelay: time.Millisecond, OutboxLimit: 10, WriteTimeout: 30 * time.Second, Observer: r}
		}, transport.SlowOutboxLimit},
		{"bytes", func(r *recorder) *transport.Options {
			return &transport.Options{MaxBatch: 128, MaxDelay: time.Millisecond, OutboxLimit: 1 << 30, OutboxBytes: 64 << 10, WriteTimeout: 30 * time.Second, Observer: r}
		}, transport.SlowOutboxBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			p := newRawPair(t, tc.opts(rec))
			reply := []byte(`{"jsonrpc":"2.0","id":1,"result":"` + strings.Repeat("x", 1000) + `"}`)
			for sent := 0; sent < 200_000 && p.conn.CloseCode() == 0; sent++ {
				p.conn.Send(reply)
			}
			require.Equal(t, transport.CloseSlowConsumer, p.conn.CloseCode())
			_, slow := rec.got()
			require.Equal(t, []transport.SlowReason{tc.reason}, slow)
			// The close frame names the bound, once the client reads
			// what the socket held before it.
			_ = p.client.SetReadDeadline(time.Now().Add(20 * time.Second))
			var err error
			for err == nil {
				_, _, err = p.client.ReadMessage()
			}
			var ce *websocket.CloseError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, transport.CloseSlowConsumer, ce.Code)
			require.Equal(t, "slow consumer: delivery."+string(tc.reason)+" exceeded", ce.Text)
		})
	}
}

// A write that outlasts WriteTimeout (a reader that stopped with a frame
// half written) is counted as a slow consumer too, with its own reason.
func TestSlowConsumerWriteTimeout(t *testing.T) {
	rec := &recorder{}
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 200 * time.Millisecond, Observer: rec}
	p := newRawPair(t, opts)
	p.conn.Deliver(pubOf(1, `"`+strings.Repeat("y", 32<<20)+`"`)) // more than the socket buffers hold
	require.Eventually(t, func() bool { _, slow := rec.got(); return len(slow) > 0 }, 30*time.Second, 10*time.Millisecond)
	_, slow := rec.got()
	require.Equal(t, []transport.SlowReason{transport.SlowWriteTimeout}, slow)
}

// A connection closed for its outbox while a write was stuck is one slow
// consumer, counted for the outbox: the stuck write's deadline, which the
// close frame waits out, is not counted again as a write timeout.
func TestSlowConsumerIsCountedOnce(t *testing.T) {
	rec := &recorder{}
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Millisecond, OutboxLimit: 10, WriteTimeout: 300 * time.Millisecond, Observer: rec}
	p := newRawPair(t, opts)
	p.conn.Deliver(pubOf(1, `"`+strings.Repeat("y", 32<<20)+`"`)) // more than the socket buffers hold: the write blocks
	for i := 0; i < 1000 && p.conn.CloseCode() == 0; i++ {
		p.conn.Send([]byte(`{"jsonrpc":"2.0","id":1,"result":1}`))
	}
	require.Equal(t, transport.CloseSlowConsumer, p.conn.CloseCode())
	select {
	case <-p.conn.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the aborted connection never ended")
	}
	require.Never(t, func() bool { _, slow := rec.got(); return len(slow) > 1 }, time.Second, 20*time.Millisecond)
	_, slow := rec.got()
	require.Equal(t, []transport.SlowReason{transport.SlowOutboxLimit}, slow)
}

// A writer's turn is reported to the Observer at once, so that its
// histograms are updated with their cache lines fetched once: a publish
// held for the rest of it (More) and then ended (EndGroup) leaves to 20
// connections in one turn, heard in one Sent with a batch and a latency
// for each.
func TestObserverHearsATurnAtOnce(t *testing.T) {
	rec := &recorder{}
	// MaxDelay is long, so that only EndGroup lets the frames leave.
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Minute, OutboxLimit: 100, WriteTimeout: 5 * time.Second, Observer: rec}
	pairs := make([]*rawPair, 20)
	for i := range pairs {
		pairs[i] = newRawPair(t, opts)
	}
	pub := pubOf(1, `{}`)
	pub.More, pub.Accepted = true, time.Now()
	for _, p := range pairs {
		p.conn.Deliver(pub)
	}
	opts.EndGroup()
	for _, p := range pairs {
		require.Equal(t, []uint64{1}, batchSeqs(t, p.client))
	}
	require.Eventually(t, func() bool { lat, _ := rec.got(); return len(lat) == len(pairs) }, 10*time.Second, time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Equal(t, 1, rec.calls, "one report for the turn")
	require.Len(t, rec.batches, len(pairs))
	for _, n := range rec.batches {
		require.Equal(t, 1, n)
	}
}
