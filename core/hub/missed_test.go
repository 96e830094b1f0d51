package hub_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
)

// missedSink tells missed publications from live ones.
type missedSink struct {
	sink
	mu     sync.Mutex
	missed []uint64
}

func (s *missedSink) DeliverMissed(p *broker.Publication) {
	s.mu.Lock()
	s.missed = append(s.missed, p.Seq)
	s.mu.Unlock()
}

// A resume's history goes to DeliverMissed, live publications to Deliver:
// the transport measures delivery latency on the live ones only.
func TestMissedPublicationsAreHandedOverApart(t *testing.T) {
	h, b := setup(100)
	pub(t, b, "c", 3)
	s := &missedSink{sink: sink{uid: "u"}}
	j, err := h.Subscribe(context.Background(), s, "c", &broker.Position{Seq: 0, Epoch: mustPosition(t, b, "c").Epoch})
	require.NoError(t, err)
	j.Activate()
	pub(t, b, "c", 2)
	s.mu.Lock()
	require.Equal(t, []uint64{1, 2, 3}, s.missed)
	s.mu.Unlock()
	s.sink.mu.Lock()
	require.Equal(t, []uint64{4, 5}, s.sink.seqs)
	s.sink.mu.Unlock()
}

func mustPosition(t *testing.T, b broker.Broker, ch string) broker.Position {
	pos, err := b.Position(context.Background(), ch)
	require.NoError(t, err)
	return pos
}
