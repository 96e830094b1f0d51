package natsbroker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/internal/natstest"
)

// runRecorder is a Handler that is also a broker.RunHandler: it writes
// down what it is told, in order.
type runRecorder struct {
	mu     sync.Mutex
	events []string
	pubs   int
}

func (r *runRecorder) HandlePublication(p *broker.Publication) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf("pub %d", p.Seq))
	r.pubs++
	r.mu.Unlock()
}

func (r *runRecorder) RunChanged(channel string, pos broker.Position) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf("run %s %d %s", channel, pos.Seq, pos.Epoch))
	r.mu.Unlock()
}

func (r *runRecorder) waitFor(t *testing.T, pubs int) []string {
	t.Helper()
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.pubs >= pubs
	}, 30*time.Second, time.Millisecond, "waiting for %d publications", pubs)
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// A channel whose messages all aged out while a node watched it starts a
// new run (seq 1 of a new epoch): the watching node's Handler is told so
// once, before the new run's first publication, with the new run's
// position. A node that started watching after the old run was over
// (its subscribers joined at {0, new epoch}) is not told of a change it
// did not miss.
func TestNATSNewRunIsTold(t *testing.T) {
	srv := natstest.Start(t)
	const ttl = 2 * time.Second
	opts := uniqueOptions(10, ttl)
	a, b, c := newBroker(t, srv.URL(), opts), newBroker(t, srv.URL(), opts), newBroker(t, srv.URL(), opts)
	recB, recC := &runRecorder{}, &runRecorder{}
	b.SetHandler(recB)
	c.SetHandler(recC)
	ctx := context.Background()

	watch(t, b, "r")
	publishEventually(t, a, note("r"))
	publishEventually(t, a, note("r"))
	require.Equal(t, []string{"pub 1", "pub 2"}, recB.waitFor(t, 2))
	old, err := a.Position(ctx, "r") // a does not watch: the stream's answer
	require.NoError(t, err)
	require.Equal(t, uint64(2), old.Seq)

	// Every message of the channel ages out; a, which does not watch it,
	// reads the stream and says when the next run is due.
	time.Sleep(2 * ttl)
	var next broker.Position
	require.Eventually(t, func() bool {
		next, err = a.Position(ctx, "r")
		require.NoError(t, err)
		return next.Epoch != old.Epoch
	}, 30*time.Second, 10*time.Millisecond, "the channel's history never aged out")
	require.Equal(t, uint64(0), next.Seq)
	watch(t, c, "r") // its baseline is {0, next}

	publishEventually(t, a, note("r"))
	publishEventually(t, a, note("r"))
	cur, err := a.Position(ctx, "r")
	require.NoError(t, err)
	require.Equal(t, broker.Position{Seq: 2, Epoch: next.Epoch}, cur, "the new run goes on in the epoch announced")
	require.Equal(t, []string{"pub 1", "pub 2", "run r 0 " + next.Epoch, "pub 1", "pub 2"}, recB.waitFor(t, 4),
		"told once, before the new run's first publication")
	require.Equal(t, []string{"pub 1", "pub 2"}, recC.waitFor(t, 2), "a node that joined the new run is not told")
}

// A message that is not herald's on a channel's subject (a marker: a
// purge's, or another client's) ends the channel's run: a watching node's
// Handler is told at once, with the next run's position, and the run that
// follows is not announced again.
func TestNATSMarkerRunIsTold(t *testing.T) {
	srv := natstest.Start(t)
	opts := uniqueOptions(10, time.Hour)
	a, b := newBroker(t, srv.URL(), opts), newBroker(t, srv.URL(), opts)
	rec := &runRecorder{}
	b.SetHandler(rec)
	ctx := context.Background()

	watch(t, b, "mk")
	publishEventually(t, a, note("mk"))
	require.Equal(t, []string{"pub 1"}, rec.waitFor(t, 1))
	_, err := connect(t, srv.URL()).Request(opts.SubjectPrefix+".ch.mk", []byte("not herald's"), 10*time.Second)
	require.NoError(t, err, "stored by the stream")
	publishEventually(t, a, note("mk"))
	cur, err := a.Position(ctx, "mk")
	require.NoError(t, err)
	require.Equal(t, uint64(1), cur.Seq, "a new run")
	require.Equal(t, []string{"pub 1", "run mk 0 " + cur.Epoch, "pub 1"}, rec.waitFor(t, 2))
}
