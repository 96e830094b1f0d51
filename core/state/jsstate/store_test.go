package jsstate_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
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

// natsServer is an in-process nats-server with JetStream in dir.
type natsServer struct {
	t    testing.TB
	dir  string
	port int
	srv  *server.Server
}

// runNATS starts a server on a random loopback port (internal/natstest
// will replace this helper).
func runNATS(t testing.TB) *natsServer {
	n := &natsServer{t: t, dir: t.TempDir(), port: -1}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	srv, err := server.NewServer(&server.Options{
		Host:       "127.0.0.1",
		Port:       n.port,
		JetStream:  true,
		StoreDir:   n.dir,
		MaxPayload: 2 << 20, // a value of state.MaxValueBytes and its headers
		NoLog:      true,
		NoSigs:     true,
	})
	require.NoError(n.t, err)
	go srv.Start()
	require.True(n.t, srv.ReadyForConnections(30*time.Second), "nats-server not ready")
	n.port = srv.Addr().(*net.TCPAddr).Port
	n.srv = srv
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// connect opens a client that reconnects quickly and forever.
func (n *natsServer) connect(t testing.TB) jetstream.JetStream {
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", n.port),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

var buckets atomic.Int64

func open(t testing.TB, js jetstream.JetStream, opts jsstate.Options) *jsstate.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := jsstate.Open(ctx, js, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	n := runNATS(t)
	statetest.Run(t, statetest.Factory{
		Shared: true,
		New: func(t *testing.T, maxBytes int64) func(t *testing.T) state.Store {
			opts := jsstate.Options{Bucket: fmt.Sprintf("herald_state_t%d", buckets.Add(1)), MaxBytes: maxBytes}
			return func(t *testing.T) state.Store {
				// A connection per Store, as a node has.
				return open(t, n.connect(t), opts)
			}
		},
	})
}

func BenchmarkStore(b *testing.B) {
	n := runNATS(b)
	statetest.Bench(b, open(b, n.connect(b), jsstate.Options{Bucket: "herald_state_bench"}))
}
