package jsstate_test

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/state"
	"github.com/heraldhq/herald/core/state/jsstate"
	"github.com/heraldhq/herald/core/state/statetest"
)

// runCluster starts a JetStream cluster of n servers on loopback and
// returns their client URLs.
func runCluster(t *testing.T, n int) []string {
	// Route ports are picked first so that every server can name all the
	// others.
	var routes []*url.URL
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ports[i] = l.Addr().(*net.TCPAddr).Port
		require.NoError(t, l.Close())
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	var servers []*server.Server
	for i := 0; i < n; i++ {
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("s%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			MaxPayload: 2 << 20,
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "herald", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes,
		})
		require.NoError(t, err)
		go srv.Start()
		t.Cleanup(func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		})
		servers = append(servers, srv)
	}
	var urls []string
	for _, srv := range servers {
		require.True(t, srv.ReadyForConnections(60*time.Second), "cluster server not ready")
		urls = append(urls, fmt.Sprintf("nats://%s", srv.Addr().(*net.TCPAddr).String()))
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
