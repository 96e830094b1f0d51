// Package brokertest is the behaviour every broker.Broker must show. The
// memory broker runs it today; a NATS JetStream broker runs the same suite,
// so that clustering cannot change what clients see.
package brokertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
)

// Factory returns a fresh broker keeping size publications for ttl.
type Factory func(t *testing.T, size int, ttl time.Duration) broker.Broker

// Sweeper is a broker that forgets idle channels when asked (the memory
// broker; the server calls it periodically). keep is asked about each idle
// channel, with the channel locked: a publish to it waits for the answer.
// The suite sweeps brokers that have it and runs the same checks on those
// that forget on their own.
type Sweeper interface {
	Sweep(now time.Time, keep func(channel string) bool) int
}

type recorder struct {
	mu   sync.Mutex
	pubs []*broker.Publication
}

func (r *recorder) HandlePublication(p *broker.Publication) {
	r.mu.Lock()
	r.pubs = append(r.pubs, p)
	r.mu.Unlock()
}

func (r *recorder) waitFor(t *testing.T, n int) []*broker.Publication {
	t.Helper()
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.pubs) >= n
	}, 10*time.Second, time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*broker.Publication(nil), r.pubs...)
}

// follow makes b hand the channels' publications to its Handler, as the
// hub does when a channel gets its first subscriber here: a broker that
// feeds a node only the channels it watches (broker.Interest) is told to
// watch them, and their position is read after, which is where its
// Handler starts.
func follow(t *testing.T, b broker.Broker, channels ...string) {
	t.Helper()
	in, ok := b.(broker.Interest)
	if !ok {
		return
	}
	for _, ch := range channels {
		in.Watch(ch)
		_, err := b.Position(context.Background(), ch)
		require.NoError(t, err)
	}
}

func n(channel string, i int) broker.Notification {
	return broker.Notification{Channel: channel, Event: "e", ObjectType: "t", Object: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
}

// Run runs the suite against brokers made by f.
func Run(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("seq from 1 without gaps, per channel", func(t *testing.T) {
		b := f(t, 100, time.Hour)
		rec := &recorder{}
		b.SetHandler(rec)
		follow(t, b, "a", "b")
		pubs, err := b.Publish(ctx, []broker.Notification{n("a", 0), n("b", 1), n("a", 2)})
		require.NoError(t, err)
		require.Equal(t, []uint64{1, 1, 2}, []uint64{pubs[0].Seq, pubs[1].Seq, pubs[2].Seq})
		got := rec.waitFor(t, 3)
		require.Equal(t, []string{"a", "b", "a"}, []string{got[0].Channel, got[1].Channel, got[2].Channel}, "handler sees acceptance order")
		for _, p := range got {
			var v struct {
				ID      string
				Channel string
				Seq     uint64
				Object  json.RawMessage
			}
			require.NoError(t, json.Unmarshal(p.Data, &v))
			require.Equal(t, p.ID, v.ID)
			require.Equal(t, p.Channel, v.Channel)
			require.Equal(t, p.Seq, v.Seq)
		}
	})

	t.Run("history since a position", func(t *testing.T) {
		b := f(t, 10, time.Hour)
		b.SetHandler(&recorder{})
		pos, err := b.Position(ctx, "h")
		require.NoError(t, err)
		require.Equal(t, uint64(0), pos.Seq)
		for i := 0; i < 15; i++ {
			_, err := b.Publish(ctx, []broker.Notification{n("h", i)})
			require.NoError(t, err)
		}
		pubs, cur, err := b.History(ctx, "h", broker.Position{Seq: 12, Epoch: pos.Epoch})
		require.NoError(t, err)
		require.Equal(t, uint64(15), cur.Seq)
		require.Equal(t, pos.Epoch, cur.Epoch)
		require.Len(t, pubs, 3)
		require.Equal(t, uint64(13), pubs[0].Seq)

		pubs, _, err = b.History(ctx, "h", broker.Position{Seq: 15, Epoch: pos.Epoch})
		require.NoError(t, err)
		require.Empty(t, pubs)

		pubs, _, err = b.History(ctx, "h", broker.Position{Seq: 5, Epoch: pos.Epoch})
		require.NoError(t, err, "10 kept: seq 6..15 are all there")
		require.Len(t, pubs, 10)

		for _, since := range []broker.Position{{Seq: 4, Epoch: pos.Epoch}, {Seq: 12, Epoch: "other"}, {Seq: 16, Epoch: pos.Epoch}} {
			_, cur, err := b.History(ctx, "h", since)
			require.True(t, errors.Is(err, broker.ErrUnrecoverable), "since %+v", since)
			require.Equal(t, uint64(15), cur.Seq)
		}
	})

	t.Run("size 0 keeps none, and a caller in step resumes", func(t *testing.T) {
		b := f(t, 0, time.Hour)
		b.SetHandler(&recorder{})
		publish(t, b, "z", 3)
		pos, err := b.Position(ctx, "z")
		require.NoError(t, err)
		require.Equal(t, uint64(3), pos.Seq)
		// Nothing was missed: nothing to recover, and nothing lost.
		requireHistory(t, b, "z", pos, nil)
		_, cur, err := b.History(ctx, "z", broker.Position{Seq: 2, Epoch: pos.Epoch})
		require.ErrorIs(t, err, broker.ErrUnrecoverable, "seq 3 was not kept")
		require.Equal(t, pos, cur)
	})

	t.Run("history expires after its ttl", func(t *testing.T) {
		b := f(t, 10, 200*time.Millisecond)
		b.SetHandler(&recorder{})
		pos, _ := b.Position(ctx, "ttl")
		_, err := b.Publish(ctx, []broker.Notification{n("ttl", 0)})
		require.NoError(t, err)
		_, _, err = b.History(ctx, "ttl", pos)
		require.NoError(t, err)
		time.Sleep(400 * time.Millisecond)
		_, _, err = b.History(ctx, "ttl", pos)
		require.ErrorIs(t, err, broker.ErrUnrecoverable)
	})

	t.Run("concurrent publishers keep each channel in seq order", func(t *testing.T) {
		b := f(t, 1000, time.Hour)
		rec := &recorder{}
		b.SetHandler(rec)
		follow(t, b, "c0", "c1", "c2")
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < 100; i++ {
					_, err := b.Publish(ctx, []broker.Notification{n(fmt.Sprintf("c%d", i%3), i)})
					require.NoError(t, err)
				}
			}(w)
		}
		wg.Wait()
		last := map[string]uint64{}
		for _, p := range rec.waitFor(t, 400) {
			require.Equal(t, last[p.Channel]+1, p.Seq, "channel %s", p.Channel)
			last[p.Channel] = p.Seq
		}
	})
	runHistoryCases(t, f)
	runAtomicity(t, f)
	runSweepRace(t, f)
}
