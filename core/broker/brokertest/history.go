package brokertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
)

// publish publishes one notification per seq and returns the publications.
func publish(t *testing.T, b broker.Broker, channel string, count int) []*broker.Publication {
	t.Helper()
	var out []*broker.Publication
	for i := 0; i < count; i++ {
		pubs, err := b.Publish(context.Background(), []broker.Notification{n(channel, i)})
		require.NoError(t, err)
		out = append(out, pubs...)
	}
	return out
}

// requireHistory checks that the history after since is exactly want.
func requireHistory(t *testing.T, b broker.Broker, channel string, since broker.Position, want []*broker.Publication) {
	t.Helper()
	got, cur, err := b.History(context.Background(), channel, since)
	require.NoError(t, err, "history of %s since %+v", channel, since)
	require.Equal(t, since.Epoch, cur.Epoch)
	require.Len(t, got, len(want), "history of %s since %+v", channel, since)
	for i := range want {
		require.NotNil(t, got[i], "history of %s since %+v: entry %d", channel, since, i)
		require.Equal(t, want[i].Seq, got[i].Seq, "history of %s since %+v: entry %d", channel, since, i)
		require.Equal(t, want[i].ID, got[i].ID, "history of %s since %+v: entry %d", channel, since, i)
	}
}

// waitExpired waits until the channel's history is empty: every
// publication older than ttl is gone. Only the wait's start is timed (it
// never ends early); its end is the event.
func waitExpired(t *testing.T, b broker.Broker, channel string, ttl time.Duration, pos broker.Position) {
	t.Helper()
	time.Sleep(2 * ttl)
	require.Eventually(t, func() bool {
		_, _, err := b.History(context.Background(), channel, broker.Position{Seq: pos.Seq - 1, Epoch: pos.Epoch})
		if !errors.Is(err, broker.ErrUnrecoverable) {
			return false
		}
		// Settled: the channel kept its seq (the memory broker), or its
		// stream says the run is over (a NATS subject delete marker
		// opens a new epoch).
		cur, err := b.Position(context.Background(), channel)
		return err == nil && (cur.Epoch != pos.Epoch || cur.Seq == pos.Seq)
	}, 10*time.Second, 10*time.Millisecond, "history of %s never expired", channel)
}

// requireNewEpoch checks what a broker that starts a new epoch once a
// channel's history is gone must show: the old position is unrecoverable,
// the new run starts at seq 1 and its history is later.
func requireNewEpoch(t *testing.T, b broker.Broker, channel string, old, cur broker.Position, later []*broker.Publication) {
	t.Helper()
	_, _, err := b.History(context.Background(), channel, old)
	require.ErrorIs(t, err, broker.ErrUnrecoverable, "the old epoch is gone")
	for i, p := range later {
		require.Equal(t, uint64(i+1), p.Seq, "a new epoch starts at seq 1")
	}
	requireHistory(t, b, channel, broker.Position{Epoch: cur.Epoch}, later)
}

func runHistoryCases(t *testing.T, f Factory) {
	ctx := context.Background()
	// Long enough that what a case publishes after the wait outlives its
	// checks, on a broker that asks a NATS server for each of them; the
	// cases wait in parallel.
	const ttl = 2 * time.Second

	t.Run("publish after full expiry resumes without gap or duplicate", func(t *testing.T) {
		t.Parallel()
		b := f(t, 10, ttl)
		b.SetHandler(&recorder{})
		publish(t, b, "x", 3)
		pos, err := b.Position(ctx, "x")
		require.NoError(t, err)
		waitExpired(t, b, "x", ttl, pos) // the History call expires every entry
		if cur, _ := b.Position(ctx, "x"); cur.Epoch == pos.Epoch {
			// A client that had everything up to seq 3 is still in step.
			requireHistory(t, b, "x", pos, nil)
		}
		later := publish(t, b, "x", 4)
		if cur, _ := b.Position(ctx, "x"); cur.Epoch != pos.Epoch {
			// A broker may start a new epoch rather than continue the seq.
			requireNewEpoch(t, b, "x", pos, cur, later)
			return
		}
		requireHistory(t, b, "x", pos, later)
		requireHistory(t, b, "x", broker.Position{Seq: later[1].Seq, Epoch: pos.Epoch}, later[2:])
		_, _, err = b.History(ctx, "x", broker.Position{Seq: 1, Epoch: pos.Epoch})
		require.ErrorIs(t, err, broker.ErrUnrecoverable, "seq 2 and 3 expired")
	})

	t.Run("publish after a sweep of a subscribed channel", func(t *testing.T) {
		t.Parallel()
		b := f(t, 10, ttl)
		b.SetHandler(&recorder{})
		publish(t, b, "s", 2)
		pos, _ := b.Position(ctx, "s")
		time.Sleep(2 * ttl)
		sw, ok := b.(Sweeper)
		if ok {
			// The channel has subscribers: its entries expire, it stays.
			sw.Sweep(time.Now(), func(string) bool { return true })
		} else {
			waitExpired(t, b, "s", ttl, pos)
		}
		later := publish(t, b, "s", 3)
		if cur, _ := b.Position(ctx, "s"); cur.Epoch != pos.Epoch {
			require.False(t, ok, "the swept channel has subscribers: it keeps its epoch")
			requireNewEpoch(t, b, "s", pos, cur, later)
			return
		}
		require.Equal(t, pos.Seq+1, later[0].Seq)
		requireHistory(t, b, "s", pos, later)
	})

	t.Run("publish after a sweep forgot the channel", func(t *testing.T) {
		t.Parallel()
		b := f(t, 10, ttl)
		b.SetHandler(&recorder{})
		publish(t, b, "f", 2)
		pos, _ := b.Position(ctx, "f")
		time.Sleep(2 * ttl)
		sw, ok := b.(Sweeper)
		if ok {
			require.Equal(t, 1, sw.Sweep(time.Now(), nil))
		} else {
			waitExpired(t, b, "f", ttl, pos)
		}
		later := publish(t, b, "f", 3)
		cur, _ := b.Position(ctx, "f")
		if cur.Epoch == pos.Epoch {
			require.False(t, ok, "the sweep forgot the channel: its epoch must not come back")
			// A broker that keeps the stream continues it.
			require.Equal(t, pos.Seq+3, cur.Seq)
			requireHistory(t, b, "f", pos, later)
			return
		}
		requireNewEpoch(t, b, "f", pos, cur, later)
	})

	t.Run("wrap-around at history size, also after an expiry", func(t *testing.T) {
		t.Parallel()
		for _, size := range []int{1, 3, 4, 17} {
			t.Run(fmt.Sprint(size), func(t *testing.T) {
				t.Parallel()
				b := f(t, size, ttl)
				b.SetHandler(&recorder{})
				ch := fmt.Sprintf("w%d", size)
				// The ring is partly grown when the entries expire.
				publish(t, b, ch, (size+1)/2)
				pos, _ := b.Position(ctx, ch)
				waitExpired(t, b, ch, ttl, pos)
				// After every publish, each position still in history
				// resumes exactly.
				var all []*broker.Publication
				for i := 0; i < 3*size+2; i++ {
					all = append(all, publish(t, b, ch, 1)...)
					if i == 0 && all[0].Seq == 1 && pos.Seq > 0 {
						// The broker started a new epoch (see
						// requireNewEpoch): the positions are of that one.
						cur, _ := b.Position(ctx, ch)
						require.NotEqual(t, pos.Epoch, cur.Epoch)
						pos = broker.Position{Epoch: cur.Epoch}
					}
					last := all[len(all)-1].Seq
					for since := last; since >= pos.Seq && since+uint64(size) >= last; since-- {
						// Both ends of what is kept, where the ring wraps,
						// and the middle of a long one once per lap.
						if fromEnd := last - since; fromEnd <= 2 || fromEnd+2 >= uint64(size) || since%uint64(size) == 0 {
							requireHistory(t, b, ch, broker.Position{Seq: since, Epoch: pos.Epoch}, all[since-pos.Seq:])
						}
						if since == 0 {
							break
						}
					}
				}
				last := all[len(all)-1].Seq
				_, _, err := b.History(ctx, ch, broker.Position{Seq: last - uint64(size) - 1, Epoch: pos.Epoch})
				require.ErrorIs(t, err, broker.ErrUnrecoverable)
			})
		}
	})
}

// ctxCanceller cancels a context when it sees its first publication.
type ctxCanceller struct {
	recorder
	cancel context.CancelFunc
}

func (c *ctxCanceller) HandlePublication(p *broker.Publication) {
	c.cancel()
	c.recorder.HandlePublication(p)
}

func runAtomicity(t *testing.T, f Factory) {
	t.Run("publish is all or nothing", func(t *testing.T) {
		b := f(t, 100, time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		h := &ctxCanceller{cancel: cancel}
		b.SetHandler(h)
		follow(t, b, "p1", "p2", "p3")
		ns := []broker.Notification{n("p1", 0), n("p2", 1), n("p1", 2), n("p3", 3)}
		// The context ends while the publish is under way.
		pubs, err := b.Publish(ctx, ns)
		p1, _ := b.Position(context.Background(), "p1")
		p3, _ := b.Position(context.Background(), "p3")
		h.mu.Lock()
		seen := len(h.pubs)
		h.mu.Unlock()
		if err != nil {
			require.Zero(t, seen, "a failed publish handed publications on")
			require.Zero(t, p1.Seq, "a failed publish placed publications")
			require.Zero(t, p3.Seq, "a failed publish placed publications")
			return
		}
		require.Len(t, pubs, 4)
		require.Equal(t, uint64(2), p1.Seq)
		require.Equal(t, uint64(1), p3.Seq)
		require.Len(t, h.waitFor(t, 4), 4)

		// A context that ended before: nothing at all.
		pubs, err = b.Publish(ctx, ns)
		require.Error(t, err)
		require.Empty(t, pubs)
		p1, _ = b.Position(context.Background(), "p1")
		require.Equal(t, uint64(2), p1.Seq)
	})
}

// runSweepRace races publishes against sweeps of the same channels. A
// publication acknowledged to its publisher must be in the channel's
// stream as the broker goes on: never in an epoch a sweep discarded when it
// decided, before the publication was handled, that the channel was idle.
func runSweepRace(t *testing.T, f Factory) {
	t.Run("publish racing a sweep of the same channel", func(t *testing.T) {
		b := f(t, 10, time.Hour)
		sw, ok := b.(Sweeper)
		if !ok {
			t.Skip("this broker does not sweep on demand")
		}
		var handled atomic.Int64
		b.SetHandler(handlerFunc(func(*broker.Publication) { handled.Add(1) }))
		for round := 0; round < 300; round++ {
			ch := fmt.Sprintf("race%d", round)
			publish(t, b, ch, 1)
			base := handled.Load()
			// Seen from an hour later, the channel is idle: the sweep
			// discards it unless the publish below came first.
			var decidedBefore atomic.Int64
			decidedBefore.Store(-1)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				sw.Sweep(time.Now().Add(2*time.Hour), func(name string) bool {
					if name == ch {
						decidedBefore.Store(handled.Load() - base)
					}
					return false
				})
			}()
			pubs, err := b.Publish(context.Background(), []broker.Notification{n(ch, 1)})
			require.NoError(t, err)
			wg.Wait()
			if decidedBefore.Load() == 0 {
				// The sweep discarded the stream before this publication was
				// placed: it must open the channel's next epoch.
				require.Equal(t, uint64(1), pubs[0].Seq, "round %d: publication acknowledged in a discarded epoch", round)
			}
		}
	})
}

type handlerFunc func(*broker.Publication)

func (f handlerFunc) HandlePublication(p *broker.Publication) { f(p) }
