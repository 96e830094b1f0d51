package jsstate_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/state"
	"github.com/heraldhq/herald/core/state/jsstate"
	"github.com/heraldhq/herald/core/state/statetest"
	"github.com/heraldhq/herald/internal/natstest"
)

// runCluster starts a JetStream cluster of n servers on loopback and
// returns their client URLs.
func runCluster(t *testing.T, n int) []string {
	c := natstest.StartClusterConfig(t, n, natstest.ClusterConfig{MaxPayload: 2 << 20}) // a value of state.MaxValueBytes and its headers
	urls := make([]string, n)
	for i := range urls {
		urls[i] = c.Server(i).URL()
	}
	return urls
}

// The suite on a bucket with three replicas, each Store connected to
// another server of the cluster: compare-and-set conflicts are reported
// with another code there (10164).
func TestConformanceReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server NATS cluster")
	}
	urls := runCluster(t, 3)
	next := 0
	statetest.Run(t, statetest.Factory{
		Shared: true,
		New: func(t *testing.T, maxBytes int64) func(t *testing.T) state.Store {
			opts := jsstate.Options{Bucket: fmt.Sprintf("herald_state_r%d", buckets.Add(1)), Replicas: 3, MaxBytes: maxBytes}
			return func(t *testing.T) state.Store {
				u := urls[next%len(urls)]
				next++
				nc, err := nats.Connect(u, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
				require.NoError(t, err)
				t.Cleanup(nc.Close)
				js, err := jetstream.New(nc)
				require.NoError(t, err)
				var s *jsstate.Store
				// The cluster elects its JetStream leader after it starts.
				require.Eventually(t, func() bool {
					s, err = jsstate.Open(t.Context(), js, opts)
					return err == nil
				}, 60*time.Second, 250*time.Millisecond, "open on the cluster: %v", err)
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
		},
	})
}
