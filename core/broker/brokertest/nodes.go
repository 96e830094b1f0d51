package brokertest

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
)

// Nodes returns a maker of brokers that share one store (a NATS stream):
// each broker it makes is one herald node of a cluster, keeping size
// publications per channel for ttl. A node is closed at the test's end
// unless the test closes it first.
type Nodes func(t *testing.T, size int, ttl time.Duration) func() broker.Broker

// RunNodes runs what a cluster adds to the suite: publications cross
// nodes with the same seq, id and data, only to nodes that watch the
// channel; concurrent publishers on several nodes share one seq without
// gap or fork; a node made again resumes the history; a publish of several
// notifications is all or nothing across the cluster; an idempotent
// publish retried through another node is placed once. A broker that
// feeds every node every channel (no broker.Interest) skips the interest
// case.
func RunNodes(t *testing.T, f Nodes) {
	ctx := context.Background()

	t.Run("a publication reaches another node once it watches the channel", func(t *testing.T) {
		mk := f(t, 100, time.Hour)
		a, b := mk(), mk()
		recA, recB := &recorder{}, &recorder{}
		a.SetHandler(recA)
		b.SetHandler(recB)
		if _, ok := b.(broker.Interest); !ok {
			t.Skip("this broker feeds every node every channel")
		}
		follow(t, b, "seen")
		// "unseen" is published first: once b has the later "seen", it
		// would have had "unseen" too if it were fed it.
		_, err := a.Publish(ctx, []broker.Notification{n("unseen", 0)})
		require.NoError(t, err)
		_, err = a.Publish(ctx, []broker.Notification{n("seen", 1)})
		require.NoError(t, err)
		got := recB.waitFor(t, 1)
		require.Len(t, got, 1)
		require.Equal(t, "seen", got[0].Channel)

		follow(t, b, "unseen")
		pubs, err := a.Publish(ctx, []broker.Notification{n("unseen", 2)})
		require.NoError(t, err)
		got = recB.waitFor(t, 2)
		require.Equal(t, samePub(t, pubs[0]), samePub(t, got[1]), "node b gets what node a placed")
		require.Equal(t, uint64(2), got[1].Seq, "seq 1 was placed before b watched: it is history")
	})

	t.Run("concurrent publishers on two nodes share one seq", func(t *testing.T) {
		mk := f(t, 1000, time.Hour)
		a, b := mk(), mk()
		recA, recB := &recorder{}, &recorder{}
		a.SetHandler(recA)
		b.SetHandler(recB)
		follow(t, a, "shared")
		follow(t, b, "shared")
		const each = 40
		var mu sync.Mutex
		seqs := map[uint64]string{}
		var wg sync.WaitGroup
		for _, node := range []broker.Broker{a, b} {
			for w := 0; w < 2; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						pubs, err := node.Publish(ctx, []broker.Notification{n("shared", i)})
						if !assertNoError(t, err) {
							return
						}
						mu.Lock()
						_, dup := seqs[pubs[0].Seq]
						seqs[pubs[0].Seq] = pubs[0].ID
						mu.Unlock()
						if dup {
							t.Errorf("seq %d placed twice", pubs[0].Seq)
						}
					}
				}()
			}
		}
		wg.Wait()
		const total = 4 * each
		require.Len(t, seqs, total)
		for s := uint64(1); s <= total; s++ {
			require.Contains(t, seqs, s, "no gap")
		}
		gotA, gotB := recA.waitFor(t, total), recB.waitFor(t, total)
		require.Len(t, gotA, total)
		require.Len(t, gotB, total)
		for i := range gotA {
			require.Equal(t, uint64(i+1), gotA[i].Seq, "node a in seq order")
			require.Equal(t, uint64(i+1), gotB[i].Seq, "node b in seq order")
			require.Equal(t, seqs[gotA[i].Seq], gotA[i].ID)
			require.Equal(t, gotA[i].ID, gotB[i].ID, "the same publication on both nodes")
		}
	})

	t.Run("a node made again resumes the history", func(t *testing.T) {
		mk := f(t, 100, time.Hour)
		a := mk()
		a.SetHandler(&recorder{})
		before, err := a.Position(ctx, "resume")
		require.NoError(t, err)
		placed := publish(t, a, "resume", 3)
		require.NoError(t, a.Close())

		b := mk()
		b.SetHandler(&recorder{})
		requireHistory(t, b, "resume", before, placed)
		more := publish(t, b, "resume", 1)
		require.Equal(t, uint64(4), more[0].Seq)
		requireHistory(t, b, "resume", broker.Position{Seq: 2, Epoch: before.Epoch}, append(placed[2:], more...))
	})

	t.Run("a publish of several is all or nothing across nodes", func(t *testing.T) {
		mk := f(t, 100, time.Hour)
		a, b := mk(), mk()
		a.SetHandler(&recorder{})
		recB := &recorder{}
		b.SetHandler(recB)
		follow(t, b, "all1", "all2", "after")
		// Far over what a NATS message may carry (1 MiB by default).
		huge := broker.Notification{Channel: "all2", Event: "e", ObjectType: "t",
			Object: json.RawMessage(`"` + strings.Repeat("x", 4<<20) + `"`)}
		_, err := a.Publish(ctx, []broker.Notification{n("all1", 0), huge, n("all1", 1)})
		require.Error(t, err, "a notification too large to place fails the publish")
		for _, ch := range []string{"all1", "all2"} {
			pos, err := b.Position(ctx, ch)
			require.NoError(t, err)
			require.Zero(t, pos.Seq, "nothing of the failed publish is placed on %s", ch)
		}
		_, err = a.Publish(ctx, []broker.Notification{n("after", 0)})
		require.NoError(t, err)
		got := recB.waitFor(t, 1)
		require.Len(t, got, 1, "nothing of the failed publish reached node b")
		require.Equal(t, "after", got[0].Channel)
	})

	t.Run("an idempotent publish retried through another node is placed once", func(t *testing.T) {
		mk := f(t, 100, time.Hour)
		a, b := mk(), mk()
		a.SetHandler(&recorder{})
		b.SetHandler(&recorder{})
		one := n("idem", 0)
		one.MsgID = "key-1/0"
		first, err := a.Publish(ctx, []broker.Notification{one})
		require.NoError(t, err)
		// Another publication in between makes the retry's view of the
		// channel stale.
		publish(t, a, "idem", 1)
		again, err := b.Publish(ctx, []broker.Notification{one})
		require.NoError(t, err)
		require.Equal(t, samePub(t, first[0]), samePub(t, again[0]))

		batch := []broker.Notification{n("idem", 2), n("idem2", 3)}
		batch[0].MsgID, batch[1].MsgID = "key-2/0", "key-2/1"
		first, err = b.Publish(ctx, batch)
		require.NoError(t, err)
		again, err = a.Publish(ctx, batch)
		require.NoError(t, err)
		require.Len(t, again, 2)
		for i := range first {
			require.Equal(t, samePub(t, first[i]), samePub(t, again[i]))
		}
		pos, err := a.Position(ctx, "idem")
		require.NoError(t, err)
		require.Equal(t, uint64(3), pos.Seq, "each placed once")
		pos, err = a.Position(ctx, "idem2")
		require.NoError(t, err)
		require.Equal(t, uint64(1), pos.Seq, "each placed once")
	})
}

// samePub is what two nodes must agree on about a publication (More and
// Accepted are per node).
func samePub(t *testing.T, p *broker.Publication) broker.Publication {
	t.Helper()
	require.NotNil(t, p)
	return broker.Publication{Channel: p.Channel, Seq: p.Seq, ID: p.ID, Data: p.Data}
}

func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Errorf("publish: %v", err)
		return false
	}
	return true
}
