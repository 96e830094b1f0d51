package hub_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/hub"
)

// queue is the bounded queue of a paged test subscriber, drained by hand:
// Room is what is left of its capacity, WhenDrained's function runs when
// the test says the queue was read.
type queue struct {
	qmu      sync.Mutex
	capacity int
	queued   int
	drained  func()
}

func (q *queue) took() {
	q.qmu.Lock()
	q.queued++
	q.qmu.Unlock()
}

func (q *queue) Room() int {
	q.qmu.Lock()
	defer q.qmu.Unlock()
	return q.capacity - q.queued
}

func (q *queue) WhenDrained(f func()) {
	q.qmu.Lock()
	defer q.qmu.Unlock()
	q.drained = f
}

// drain empties the queue and runs what waited for it (as the transport
// does, on a goroutine of its own; here synchronously). It reports whether
// anything waited.
func (q *queue) drain() bool {
	q.qmu.Lock()
	q.queued = 0
	f := q.drained
	q.drained = nil
	q.qmu.Unlock()
	if f != nil {
		f()
	}
	return f != nil
}

// pagedSink is a sink with a queue: a Pager.
type pagedSink struct {
	sink
	queue
	resyncs []broker.Position
}

func (s *pagedSink) Deliver(p *broker.Publication) {
	s.sink.Deliver(p)
	s.took()
}

func (s *pagedSink) Resync(channel string, pos broker.Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resyncs = append(s.resyncs, pos)
}

func (s *pagedSink) got() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.seqs...)
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// A resume across more missed publications than the subscriber's queue
// holds is delivered a page at a time as it drains, with what is published
// meanwhile after it: every seq once, in order, and never more than the
// queue holds at once.
func TestResumeIsPagedAsTheSubscriberDrains(t *testing.T) {
	h, b := setup(1000)
	pub(t, b, "c", 100)
	pos, err := b.Position(context.Background(), "c")
	require.NoError(t, err)
	s := &pagedSink{queue: queue{capacity: 16}}
	j, err := h.Subscribe(context.Background(), s, "c", &broker.Position{Seq: 10, Epoch: pos.Epoch})
	require.NoError(t, err)
	require.True(t, j.Recovered)
	j.Activate()
	require.Equal(t, seqRange(11, 26), s.got(), "one page: what the queue has room for")
	for round := 0; s.drain(); round++ {
		require.LessOrEqual(t, s.queued, s.capacity)
		if round%2 == 0 {
			pub(t, b, "c", 3) // live publications arrive while it pages
		}
	}
	want := seqRange(11, uint64(len(s.got())+10))
	require.Equal(t, want, s.got())
	final, _ := b.Position(context.Background(), "c")
	require.Equal(t, final.Seq, want[len(want)-1], "everything up to the end")
	pub(t, b, "c", 2) // now live
	require.Equal(t, seqRange(11, final.Seq+2), s.got())
	require.Empty(t, s.resyncs)
}

// When publications arrive faster than the subscriber pages, its buffer is
// bounded: past the hub's recovery limit they are dropped and read again
// from the history when it gets to them, still gapless.
func TestRecoveryBufferOverflowIsReadAgainFromHistory(t *testing.T) {
	h, b := setup(1000)
	h.SetRecoveryLimit(5)
	pub(t, b, "c", 50)
	pos, _ := b.Position(context.Background(), "c")
	s := &pagedSink{queue: queue{capacity: 10}}
	j, err := h.Subscribe(context.Background(), s, "c", &broker.Position{Seq: 0, Epoch: pos.Epoch})
	require.NoError(t, err)
	j.Activate()
	pub(t, b, "c", 40) // 40 > the limit of 5 buffered
	for s.drain() {
	}
	require.Equal(t, seqRange(1, 90), s.got())
	require.Empty(t, s.resyncs)
}

// If the history no longer covers what a paging subscriber still needs
// (it was too slow, the ring moved on), it is told with a resync carrying
// the current position, and continues from there without a duplicate.
func TestPagingPastTheHistoryResyncs(t *testing.T) {
	h, b := setup(20) // history keeps 20
	h.SetRecoveryLimit(5)
	pub(t, b, "c", 20)
	pos, _ := b.Position(context.Background(), "c")
	s := &pagedSink{queue: queue{capacity: 4}}
	j, err := h.Subscribe(context.Background(), s, "c", &broker.Position{Seq: 0, Epoch: pos.Epoch})
	require.NoError(t, err)
	require.True(t, j.Recovered)
	j.Activate()
	require.Equal(t, seqRange(1, 4), s.got())
	pub(t, b, "c", 30) // the buffer overflows; the history now starts at 31
	for s.drain() {
	}
	require.Len(t, s.resyncs, 1)
	require.Equal(t, uint64(50), s.resyncs[0].Seq)
	require.Equal(t, pos.Epoch, s.resyncs[0].Epoch)
	pub(t, b, "c", 1)
	require.Equal(t, append(seqRange(1, 20), 51), s.got(), "its history until the gap, then live after the resync position")
}

// Subscribers that are not Pagers take everything at once, as before.
func TestUnpagedSubscriberTakesEverythingAtOnce(t *testing.T) {
	h, b := setup(1000)
	pub(t, b, "c", 500)
	pos, _ := b.Position(context.Background(), "c")
	s := &sink{}
	j, err := h.Subscribe(context.Background(), s, "c", &broker.Position{Seq: 0, Epoch: pos.Epoch})
	require.NoError(t, err)
	j.Activate()
	require.Equal(t, int64(500), s.n.Load())
}

var _ hub.Pager = (*pagedSink)(nil)
var _ hub.Resyncer = (*pagedSink)(nil)
