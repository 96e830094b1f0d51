package hub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/hub"
)

// fakeHistory answers what the test set: the channel's position, and the
// publications a resume gets.
type fakeHistory struct {
	mu   sync.Mutex
	pos  broker.Position
	pubs []*broker.Publication
	// entered, when set, is told when History is called, which then
	// waits for release.
	entered, release chan struct{}
}

func (f *fakeHistory) set(pos broker.Position, pubs ...*broker.Publication) {
	f.mu.Lock()
	f.pos, f.pubs = pos, pubs
	f.mu.Unlock()
}

func (f *fakeHistory) History(_ context.Context, _ string, _ broker.Position) ([]*broker.Publication, broker.Position, error) {
	f.mu.Lock()
	if entered := f.entered; entered != nil {
		f.entered = nil
		f.mu.Unlock()
		entered <- struct{}{}
		<-f.release
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	return append([]*broker.Publication(nil), f.pubs...), f.pos, nil
}

func (f *fakeHistory) Position(context.Context, string) (broker.Position, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pos, nil
}

// eventSink writes down the publications and resyncs it is given, in one
// list.
type eventSink struct {
	mu     sync.Mutex
	events []string
}

func (s *eventSink) Deliver(p *broker.Publication) {
	s.mu.Lock()
	s.events = append(s.events, fmt.Sprintf("pub %d", p.Seq))
	s.mu.Unlock()
}

func (s *eventSink) UserID() string { return "" }

func (s *eventSink) Resync(channel string, pos broker.Position) {
	s.mu.Lock()
	s.events = append(s.events, fmt.Sprintf("resync %s %d %s", channel, pos.Seq, pos.Epoch))
	s.mu.Unlock()
}

func (s *eventSink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

// pagedEventSink is an eventSink with a queue: a Pager, as pagedSink.
type pagedEventSink struct {
	eventSink
	queue
}

func (s *pagedEventSink) Deliver(p *broker.Publication) {
	s.eventSink.Deliver(p)
	s.took()
}

func p(seq uint64) *broker.Publication { return &broker.Publication{Channel: "c", Seq: seq} }

// A channel whose run changed (a NATS channel whose history aged out
// while it had subscribers: seq 1 again, in a new epoch) resyncs, before
// the new run's first publication, every subscriber holding a position of
// the old run: live ones, one paging through its resume (which drops the
// rest of the old run), and one not yet activated (told once activated).
// Subscribers that joined at the new run's position are not told.
func TestRunChangedResyncsSubscribersOfTheOldRun(t *testing.T) {
	ctx := context.Background()
	f := &fakeHistory{}
	h := hub.New(f)
	subscribe := func(s hub.Subscriber, since *broker.Position) *hub.Join {
		j, err := h.Subscribe(ctx, s, "c", since)
		require.NoError(t, err)
		return j
	}

	f.set(broker.Position{Seq: 2, Epoch: "e1"})
	live := &eventSink{}
	subscribe(live, nil).Activate()
	f.set(broker.Position{Seq: 5, Epoch: "e1"}, p(1), p(2), p(3), p(4), p(5))
	paging := &pagedEventSink{queue: queue{capacity: 2}}
	subscribe(paging, &broker.Position{Epoch: "e1"}).Activate()
	f.set(broker.Position{Seq: 5, Epoch: "e1"})
	waiting := &eventSink{}
	jWaiting := subscribe(waiting, nil)
	h.HandlePublication(p(6)) // the old run's last
	require.Equal(t, []string{"pub 6"}, live.got())
	require.Equal(t, []string{"pub 1", "pub 2"}, paging.got())

	// The old run is over; these join at the next run's position.
	f.set(broker.Position{Seq: 0, Epoch: "e2"})
	fresh := &eventSink{}
	subscribe(fresh, nil).Activate()
	freshWaiting := &eventSink{}
	jFreshWaiting := subscribe(freshWaiting, nil)

	h.RunChanged("c", broker.Position{Seq: 0, Epoch: "e2"})
	h.HandlePublication(p(1))
	jWaiting.Activate()
	jFreshWaiting.Activate()
	for paging.drain() {
	}
	h.HandlePublication(p(2))

	told := "resync c 0 e2"
	require.Equal(t, []string{"pub 6", told, "pub 1", "pub 2"}, live.got())
	require.Equal(t, []string{"pub 1", "pub 2", told, "pub 1", "pub 2"}, paging.got(),
		"the rest of the old run's resume is dropped")
	require.Equal(t, []string{told, "pub 1", "pub 2"}, waiting.got(), "answered at the old run's {5, e1}")
	require.Equal(t, []string{"pub 1", "pub 2"}, fresh.got(), "not told of a change it did not miss")
	require.Equal(t, []string{"pub 1", "pub 2"}, freshWaiting.got(), "not told of a change it did not miss")

	// Told once per run change: the next publications are plain.
	h.HandlePublication(p(3))
	require.Equal(t, []string{"pub 6", told, "pub 1", "pub 2", "pub 3"}, live.got())
}

// A paging subscriber whose history is being read again (its live buffer
// overflowed) when the run changes does not get the old run's
// publications that read brings back: it was told to go on from the new
// run.
func TestRunChangedDuringAHistoryReadDropsIt(t *testing.T) {
	ctx := context.Background()
	f := &fakeHistory{}
	h := hub.New(f)
	h.SetRecoveryLimit(1)
	f.set(broker.Position{Seq: 5, Epoch: "e1"}, p(1), p(2), p(3), p(4), p(5))
	s := &pagedEventSink{queue: queue{capacity: 3}}
	j, err := h.Subscribe(ctx, s, "c", &broker.Position{Epoch: "e1"})
	require.NoError(t, err)
	j.Activate()
	h.HandlePublication(p(6))
	h.HandlePublication(p(7)) // past the limit of 1: read again from the history
	f.set(broker.Position{Seq: 7, Epoch: "e1"}, p(6), p(7))
	f.mu.Lock()
	f.entered, f.release = make(chan struct{}), make(chan struct{})
	entered, release := f.entered, f.release
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.drain() // pages 4 and 5, then reads the history again
	}()
	<-entered
	h.RunChanged("c", broker.Position{Seq: 0, Epoch: "e2"})
	h.HandlePublication(p(1))
	close(release)
	<-done
	for s.drain() {
	}
	require.Equal(t, []string{"pub 1", "pub 2", "pub 3", "pub 4", "pub 5", "resync c 0 e2", "pub 1"}, s.got())
	h.HandlePublication(p(2))
	require.Equal(t, []string{"pub 1", "pub 2", "pub 3", "pub 4", "pub 5", "resync c 0 e2", "pub 1", "pub 2"}, s.got())
}

var _ broker.RunHandler = (*hub.Hub)(nil)
