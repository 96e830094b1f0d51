package hub_test

import (
	"context"
	"encoding/json"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/hub"
)

type sink struct {
	uid  string
	mu   sync.Mutex
	seqs []uint64
	n    atomic.Int64
}

func (s *sink) Deliver(p *broker.Publication) {
	s.mu.Lock()
	s.seqs = append(s.seqs, p.Seq)
	s.mu.Unlock()
	s.n.Add(1)
}
func (s *sink) UserID() string { return s.uid }

func setup(size int) (*hub.Hub, *broker.Memory) {
	b := broker.NewMemory(broker.MemoryOptions{HistorySize: size})
	h := hub.New(b)
	b.SetHandler(h)
	return h, b
}

func pub(t testing.TB, b broker.Broker, ch string, count int) {
	ns := make([]broker.Notification, count)
	for i := range ns {
		ns[i] = broker.Notification{Channel: ch, Event: "e", ObjectType: "t", Object: json.RawMessage(`{}`)}
	}
	_, err := b.Publish(context.Background(), ns)
	require.NoError(t, err)
}

// Joining with since while a publisher runs delivers each seq once, in order.
func TestJoinDuringPublishingIsGapless(t *testing.T) {
	for round := 0; round < 20; round++ {
		h, b := setup(10_000)
		pub(t, b, "c", 50)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				pub(t, b, "c", 5)
			}
		}()
		s := &sink{uid: "u"}
		pos, _ := b.Position(context.Background(), "c")
		since := broker.Position{Seq: 10, Epoch: pos.Epoch}
		j, err := h.Subscribe(context.Background(), s, "c", &since)
		require.NoError(t, err)
		require.True(t, j.Recovered)
		j.Activate()
		wg.Wait()
		s.mu.Lock()
		for i, seq := range s.seqs {
			require.Equal(t, uint64(11+i), seq, "round %d", round)
		}
		require.Equal(t, 550-10, len(s.seqs))
		s.mu.Unlock()
	}
}

func TestPresenceAndUnsubscribe(t *testing.T) {
	h, b := setup(10)
	a1, a2, bob := &sink{uid: "alice"}, &sink{uid: "alice"}, &sink{uid: "bob"}
	for _, s := range []*sink{a1, a2, bob} {
		j, err := h.Subscribe(context.Background(), s, "room", nil)
		require.NoError(t, err)
		j.Activate()
	}
	_, err := h.Subscribe(context.Background(), a1, "room", nil)
	require.ErrorIs(t, err, hub.ErrAlreadySubscribed)
	count, users := h.Presence("room")
	require.Equal(t, 3, count)
	require.ElementsMatch(t, []string{"alice", "bob"}, users)
	require.Equal(t, int64(3), h.Subscriptions())

	require.True(t, h.Unsubscribe(a1, "room"))
	require.False(t, h.Unsubscribe(a1, "room"))
	pub(t, b, "room", 1)
	require.Equal(t, int64(0), a1.n.Load())
	require.Equal(t, int64(1), a2.n.Load())
	count, users = h.Presence("room")
	require.Equal(t, 2, count)
	require.ElementsMatch(t, []string{"alice", "bob"}, users)

	h.Unsubscribe(a2, "room")
	h.Unsubscribe(bob, "room")
	require.False(t, h.HasSubscribers("room"))
	require.Equal(t, int64(0), h.Subscriptions())
}

func TestCancelledJoinReceivesNothing(t *testing.T) {
	h, b := setup(10)
	s := &sink{}
	j, err := h.Subscribe(context.Background(), s, "c", nil)
	require.NoError(t, err)
	j.Cancel()
	j.Activate()
	pub(t, b, "c", 3)
	require.Equal(t, int64(0), s.n.Load())
}

// counter is a subscriber whose Deliver costs what a real outbox's does at
// least: one atomic add.
type counter struct{ n atomic.Int64 }

func (c *counter) Deliver(*broker.Publication) { c.n.Add(1) }
func (c *counter) UserID() string              { return "" }

// BenchmarkFanOut10k publishes to a channel of 10,000 in-memory subscribers:
// the hub's share of a broadcast (encode once, fan out in parallel parts).
func BenchmarkFanOut10k(b *testing.B) {
	h, br := setup(100)
	subs := make([]*counter, 10_000)
	for i := range subs {
		subs[i] = &counter{}
		j, _ := h.Subscribe(context.Background(), subs[i], "broadcast", nil)
		j.Activate()
	}
	n := []broker.Notification{{Channel: "broadcast", Event: "e", ObjectType: "t", Object: json.RawMessage(`{"x":1}`)}}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = br.Publish(context.Background(), n)
	}
	b.ReportMetric(float64(b.N)*10_000/b.Elapsed().Seconds(), "deliveries/s")
}

// The hub says when a publish of several has been delivered, once per
// publish, even when its last publication is on a channel nobody here
// follows; a publish of one is no group.
func TestGroupEndAfterTheLastPublicationOfAPublish(t *testing.T) {
	h, b := setup(10)
	var ends atomic.Int64
	s := &sink{uid: "u"}
	var seenAtEnd []int64
	h.OnGroupEnd(func() {
		ends.Add(1)
		seenAtEnd = append(seenAtEnd, s.n.Load())
	})
	j, err := h.Subscribe(context.Background(), s, "followed", nil)
	require.NoError(t, err)
	j.Activate()

	ns := []broker.Notification{
		{Channel: "followed", Event: "e", ObjectType: "t", Object: json.RawMessage(`{}`)},
		{Channel: "followed", Event: "e", ObjectType: "t", Object: json.RawMessage(`{}`)},
		{Channel: "nobody", Event: "e", ObjectType: "t", Object: json.RawMessage(`{}`)},
	}
	pubs, err := b.Publish(context.Background(), ns)
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, false}, []bool{pubs[0].More, pubs[1].More, pubs[2].More})
	require.Equal(t, int64(1), ends.Load())
	require.Equal(t, []int64{2}, seenAtEnd, "told after both followed publications were delivered")

	pub(t, b, "followed", 1)
	require.Equal(t, int64(1), ends.Load(), "a publish of one is no group")
	pub(t, b, "followed", 2)
	require.Equal(t, int64(2), ends.Load())
}

// BenchmarkPersonal10k hands the hub publications for 10,000 channels of
// one subscriber each, in publishes of 10 (More on all but the last), from
// parallel publishers: the hub's share of per-user channels (scenario c),
// without the broker's.
func BenchmarkPersonal10k(b *testing.B) {
	h, _ := setup(1)
	h.OnGroupEnd(func() {})
	const channels = 10_000
	pubs := make([]*broker.Publication, channels)
	for i := range pubs {
		name := "u" + strconv.Itoa(i)
		j, err := h.Subscribe(context.Background(), &counter{}, name, nil)
		require.NoError(b, err)
		j.Activate()
		pubs[i] = &broker.Publication{Channel: name, Seq: 1, Data: []byte(`{}`), More: i%10 != 9}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			first := int(next.Add(10)-10) % channels
			for _, p := range pubs[first : first+10] {
				h.HandlePublication(p)
			}
		}
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10), "ns/pub")
}

// A subscriber that goes live joins the channel's delivery list there and
// then: the first publication of each of many channels of one subscriber
// allocates nothing in the hub (it rebuilt the list from the channel's map,
// allocating, before).
func TestFirstPublicationAfterJoinDoesNotRebuild(t *testing.T) {
	h, _ := setup(1)
	const channels = 1000
	pubs := make([]*broker.Publication, channels)
	subs := make([]*counter, channels)
	for i := range pubs {
		name := "u" + strconv.Itoa(i)
		subs[i] = &counter{}
		j, err := h.Subscribe(context.Background(), subs[i], name, nil)
		require.NoError(t, err)
		j.Activate()
		pubs[i] = &broker.Publication{Channel: name, Seq: 1, Data: []byte(`{}`)}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, p := range pubs {
		h.HandlePublication(p)
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.Mallocs-before.Mallocs, uint64(channels/10))
	for _, s := range subs {
		require.Equal(t, int64(1), s.n.Load())
	}
}
