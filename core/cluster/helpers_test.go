package cluster

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// Generous bounds on events: they are met in milliseconds on an idle
// machine; the bound only stops a broken test from hanging.
const (
	eventually = 30 * time.Second
	poll       = 5 * time.Millisecond
)

// testHeartbeat is short enough for quick tests and long enough that a
// loaded machine does not expire live nodes (three missed beats).
const testHeartbeat = 250 * time.Millisecond

// runNATS starts a NATS server in process on a random loopback port.
// (internal/natstest will replace it once it exists.)
func runNATS(t testing.TB, edit func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	if edit != nil {
		edit(opts)
	}
	s, err := server.NewServer(opts)
	require.NoError(t, err)
	go s.Start()
	require.True(t, s.ReadyForConnections(eventually), "nats-server did not start")
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// runNATSCluster starts n NATS servers routed to each other on loopback.
func runNATSCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	cluster := func(o *server.Options) {
		o.Cluster = server.ClusterOpts{Name: "herald-test", Host: "127.0.0.1", Port: -1, PoolSize: -1}
	}
	seed := runNATS(t, cluster)
	servers := []*server.Server{seed}
	for range n - 1 {
		servers = append(servers, runNATS(t, func(o *server.Options) {
			cluster(o)
			o.Routes = server.RoutesFromStr("nats://" + seed.ClusterAddr().String())
		}))
	}
	for _, s := range servers {
		require.Eventually(t, func() bool { return s.NumRoutes() == n-1 }, eventually, poll, "routes of %s", s.Name())
	}
	return servers
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// fakeLocal is a node's own presence and load, set by the test.
type fakeLocal struct {
	mu    sync.Mutex
	chans map[string]fakePresence
	block map[string]chan struct{} // Presence of that channel waits for it to close
	busy  atomic.Bool
	calls atomic.Int64
}

type fakePresence struct {
	count int
	users []string
}

func newFakeLocal() *fakeLocal {
	return &fakeLocal{chans: map[string]fakePresence{}, block: map[string]chan struct{}{}}
}

func (l *fakeLocal) set(channel string, count int, users ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.chans[channel] = fakePresence{count: count, users: users}
}

// stall makes Presence(channel) hang until the returned func is called.
func (l *fakeLocal) stall(channel string) (release func()) {
	ch := make(chan struct{})
	l.mu.Lock()
	l.block[channel] = ch
	l.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

func (l *fakeLocal) Presence(channel string) (int, []string) {
	l.calls.Add(1)
	l.mu.Lock()
	p, wait := l.chans[channel], l.block[channel]
	l.mu.Unlock()
	if wait != nil {
		<-wait
	}
	return p.count, slices.Clone(p.users)
}

func (l *fakeLocal) Busy() bool { return l.busy.Load() }

type testNode struct {
	*Node
	local *fakeLocal
	nc    *nats.Conn
}

// startNode joins a node with a fake Local to the NATS server at url.
func startNode(t testing.TB, url, id string, edit func(*Options)) *testNode {
	t.Helper()
	local := newFakeLocal()
	nc := connect(t, url)
	opts := Options{
		NodeID: id, Local: local, Heartbeat: testHeartbeat,
		PresenceTimeout: 5 * time.Second,
		Logger:          hclog.New(&hclog.LoggerOptions{Name: "cluster", Level: hclog.Warn, Output: testWriter{t}}),
	}
	if edit != nil {
		edit(&opts)
	}
	n, err := New(context.Background(), nc, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return &testNode{Node: n, local: local, nc: nc}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// waitMembers waits until every node sees exactly the given ids.
func waitMembers(t testing.TB, nodes []*testNode, ids ...string) {
	t.Helper()
	want := slices.Sorted(slices.Values(ids))
	for _, n := range nodes {
		require.Eventually(t, func() bool { return slices.Equal(n.Nodes(), want) }, eventually, poll,
			"node %s sees %v, want %v", n.ID(), n.Nodes(), want)
	}
}

// waitHeard waits until every node has heard k more heartbeats from each of
// the others than it had when called: by then, each has acted on whatever
// the others said before.
func waitHeard(t testing.TB, nodes []*testNode, k int) {
	t.Helper()
	base := make([]uint64, len(nodes))
	for i, n := range nodes {
		base[i] = n.Stats().HeartbeatsHeard
	}
	for i, n := range nodes {
		want := base[i] + uint64(k*(len(nodes)-1))
		require.Eventually(t, func() bool { return n.Stats().HeartbeatsHeard >= want }, eventually, poll)
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// syncBuffer is a log destination tests can read while nodes write to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newBufferLogger(b *syncBuffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "cluster", Level: hclog.Info, Output: b})
}

// waitAnswered waits until n is gathering the presence of channel and peer
// has answered in full.
func waitAnswered(t testing.TB, n *testNode, channel, peer string) {
	t.Helper()
	require.Eventually(t, func() bool {
		n.mu.Lock()
		g := n.flights[channel]
		n.mu.Unlock()
		if g == nil {
			return false
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		_, waiting := g.waiting[peer]
		return !waiting
	}, eventually, poll, "%s answered %s about %s", peer, n.ID(), channel)
}
