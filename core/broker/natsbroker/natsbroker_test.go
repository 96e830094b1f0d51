package natsbroker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/broker/brokertest"
	"github.com/heraldhq/herald/core/broker/natsbroker"
	"github.com/heraldhq/herald/internal/natstest"
)

var streams atomic.Int64

// connect opens a connection as herald's server does: nothing buffered
// while NATS is unreachable, reconnecting for ever.
func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.ReconnectBufSize(-1), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// newBroker makes a broker on its own connection; each test gets its own
// stream (and subjects) unless opts names one.
func newBroker(t testing.TB, url string, opts natsbroker.Options) *natsbroker.Broker {
	t.Helper()
	b, err := natsbroker.New(context.Background(), connect(t, url), opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

func uniqueOptions(size int, ttl time.Duration) natsbroker.Options {
	i := streams.Add(1)
	return natsbroker.Options{HistorySize: size, HistoryTTL: ttl,
		Stream: fmt.Sprintf("T%d", i), SubjectPrefix: fmt.Sprintf("t%d", i)}
}

func TestNATSBroker(t *testing.T) {
	srv := natstest.Start(t)
	brokertest.Run(t, func(t *testing.T, size int, ttl time.Duration) broker.Broker {
		return newBroker(t, srv.URL(), uniqueOptions(size, ttl))
	})
}

// nodes makes brokers on one stream of srv, each on its own connection,
// as herald nodes are.
func nodes(url string) brokertest.Nodes {
	return func(t *testing.T, size int, ttl time.Duration) func() broker.Broker {
		opts := uniqueOptions(size, ttl)
		return func() broker.Broker { return newBroker(t, url, opts) }
	}
}

func TestNATSNodes(t *testing.T) {
	srv := natstest.Start(t)
	brokertest.RunNodes(t, nodes(srv.URL()))
}

// Positions answers what Position answers, for many channels at once.
func TestNATSPositions(t *testing.T) {
	srv := natstest.Start(t)
	b := newBroker(t, srv.URL(), uniqueOptions(10, time.Hour))
	ctx := context.Background()
	var names []string
	for i := 0; i < 600; i++ {
		names = append(names, fmt.Sprintf("p.%d", i))
	}
	for _, ch := range names[:300:300] {
		if len(ch)%2 == 0 {
			_, err := b.Publish(ctx, []broker.Notification{{Channel: ch, Event: "e"}})
			require.NoError(t, err)
		}
	}
	got, err := b.Positions(ctx, names)
	require.NoError(t, err)
	require.Len(t, got, len(names))
	for _, ch := range names {
		want, err := b.Position(ctx, ch)
		require.NoError(t, err)
		require.Equal(t, want, got[ch], ch)
	}
}

// A publish of several reaches a watching node with More on all but its
// last publication (the hub holds a connection's frame for the rest), and
// with the time it was accepted.
func TestNATSBatchKeepsMore(t *testing.T) {
	srv := natstest.Start(t)
	opts := uniqueOptions(10, time.Hour)
	a, b := newBroker(t, srv.URL(), opts), newBroker(t, srv.URL(), opts)
	rec := &collector{}
	b.SetHandler(rec)
	watch(t, b, "m1")
	watch(t, b, "m2")
	accepted := time.Now().Add(-time.Second)
	ns := []broker.Notification{note("m1")[0], note("m2")[0], note("m1")[0]}
	for i := range ns {
		ns[i].Accepted = accepted
	}
	pubs, err := a.Publish(context.Background(), ns)
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, false}, []bool{pubs[0].More, pubs[1].More, pubs[2].More})
	got := rec.waitFor(t, 3)
	require.Equal(t, []bool{true, true, false}, []bool{got[0].More, got[1].More, got[2].More})
	for i, p := range got {
		require.Equal(t, pubs[i].ID, p.ID)
		require.True(t, accepted.Equal(p.Accepted), "accepted time carried to the other node")
	}
}
