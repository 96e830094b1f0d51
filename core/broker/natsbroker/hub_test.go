package natsbroker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/hub"
	"github.com/heraldhq/herald/internal/natstest"
)

type sink struct {
	mu   sync.Mutex
	seqs []uint64
}

func (s *sink) Deliver(p *broker.Publication) {
	s.mu.Lock()
	s.seqs = append(s.seqs, p.Seq)
	s.mu.Unlock()
}

func (s *sink) UserID() string { return "u" }

func (s *sink) waitFor(t *testing.T, n int) []uint64 {
	t.Helper()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.seqs) >= n
	}, 60*time.Second, time.Millisecond, "waiting for %d publications", n)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.seqs...)
}

// Subscribers joining a hub on one node while another node publishes to
// their channel, each node on its own NATS server, get every seq once and
// in order: from their position (or since) on, with no gap where the
// history read meets the live stream. This is the Watch and baseline
// protocol with the real hub.
func TestNATSHubJoinWhileAnotherNodePublishes(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	opts := uniqueOptions(10000, time.Hour)
	opts.Replicas = 3
	a := newBroker(t, c.Server(0).URL(), opts)
	b := newBroker(t, c.Server(2).URL(), opts)
	hubB := hub.New(b)
	b.SetHandler(hubB)
	ctx := context.Background()

	const channels, total = 4, 100
	start := map[string]broker.Position{}
	for i := 0; i < channels; i++ {
		ch := fmt.Sprintf("join%d", i)
		start[ch] = positionEventually(t, b, ch) // the R3 streams may still be being set up
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < total; i++ {
			for ch := range start {
				publishEventually(t, a, note(ch))
			}
		}
	}()
	type joined struct {
		s    *sink
		from uint64
		ch   string
	}
	var joins []joined
	for round := 0; round < 6; round++ {
		for ch, pos := range start {
			s := &sink{}
			var since *broker.Position
			if round%2 == 0 {
				since = &pos
			}
			j, err := hubB.Subscribe(ctx, s, ch, since)
			require.NoError(t, err)
			if since != nil && !j.Recovered {
				_, cur, err := b.History(ctx, ch, *since)
				t.Fatalf("%s since %+v not recovered: at %+v; again: %+v %v", ch, *since, j.Position, cur, err)
			}
			from := j.Position.Seq
			if since != nil {
				from = since.Seq
			}
			j.Activate()
			joins = append(joins, joined{s, from, ch})
		}
		time.Sleep(20 * time.Millisecond) // spread the joins over the publishing
	}
	wg.Wait()
	for _, j := range joins {
		got := j.s.waitFor(t, int(total-j.from))
		require.Len(t, got, int(total-j.from), "%s from %d", j.ch, j.from)
		for i, seq := range got {
			require.Equal(t, j.from+uint64(i)+1, seq, "%s from %d", j.ch, j.from)
		}
	}
}
