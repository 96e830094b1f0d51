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
