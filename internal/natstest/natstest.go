// Package natstest runs real NATS servers with JetStream for tests: one
// server inside the test process (Start) or a cluster of nats-server
// processes (StartCluster), on loopback and free ports, each with its store
// in t.TempDir(), stopped at the test's cleanup. A server can be shut down
// and restarted on the same port with the same store, as an operator's
// restart would, so tests see what clients see in production:
// disconnection, reconnection, and the stream's content intact.
//
// A cluster's servers are processes, built from the module's own
// nats-server (go.mod's tool line) without -race: under the race detector,
// nats-server v2.15.2's clustered stream code reports a race of its own
// (batchStagedDiff.commit against applyStreamMsgOp), which failed a test
// of ours that did nothing wrong. Herald's code stays in the test process,
// under -race.
//
// It knows nothing of herald: the broker, the state store and the herald
// binary's tests all use it.
package natstest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyTimeout bounds how long a server may take to accept connections, and
// a cluster to elect its JetStream meta leader.
const readyTimeout = 30 * time.Second

// Server is one NATS server with JetStream: in the test process (Start),
// or a process of its own (a Cluster's).
type Server struct {
	t    testing.TB
	mu   sync.Mutex
	srv  *server.Server
	opts server.Options
	// proc is the running process of a cluster's server (nil while it is
	// down, and for Start's), and process what it runs.
	proc    *process
	process *processConfig
}

// Start runs one NATS server with JetStream on 127.0.0.1 and a random port,
// with its store in t.TempDir(). It is shut down at t's cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	opts := baseOptions(t, "herald-test")
	s := &Server{t: t, opts: opts}
	s.start()
	t.Cleanup(s.Shutdown)
	return s
}

func baseOptions(t testing.TB, name string) server.Options {
	return server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
		// Tests publish large notifications on purpose; the default
		// payload bound (1 MiB) is what production runs with too.
	}
}

func (s *Server) start() {
	s.t.Helper()
	if s.process != nil {
		p, err := s.process.start(s.t)
		if err != nil {
			s.t.Fatalf("natstest: %v", err)
		}
		s.mu.Lock()
		s.proc = p
		s.mu.Unlock()
		return
	}
	opts := s.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("natstest: new server %s: %v", s.opts.ServerName, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		s.t.Fatalf("natstest: server %s not ready within %s", s.opts.ServerName, readyTimeout)
	}
	// A restart binds the same ports.
	s.opts.Port = srv.Addr().(*net.TCPAddr).Port
	if ca := srv.ClusterAddr(); ca != nil {
		s.opts.Cluster.Port = ca.Port
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
}

// URL is the server's client URL (nats://127.0.0.1:port); it stays the same
// across restarts.
func (s *Server) URL() string {
	if s.process != nil {
		return fmt.Sprintf("nats://127.0.0.1:%d", s.process.port)
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", s.opts.Port)
}

// Shutdown stops the server and waits until it is down. Stopping a stopped
// server does nothing.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv, proc := s.srv, s.proc
	s.srv, s.proc = nil, nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
	if proc != nil {
		if err := proc.stop(); err != nil {
			s.t.Errorf("natstest: %v", err)
		}
	}
}

// Restart stops the server if it runs and starts it again on the same
// port with the same store: clients reconnect and find their streams.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.start()
}

// Running reports whether the server is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil || s.proc != nil
}

// NATS is the running server, for tests that need its internals (nil while
// it is down, and for a cluster's servers, which are processes).
func (s *Server) NATS() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Cluster is three (or more) nats-server processes routed to each other on
// loopback, JetStream on each, under one cluster name.
type Cluster struct {
	t       testing.TB
	servers []*Server
}

// ClusterConfig is what a cluster's servers may differ in from NATS's
// defaults.
type ClusterConfig struct {
	// MaxPayload is the largest message a server takes, in bytes (0:
	// NATS's default, 1 MiB, which production runs with too).
	MaxPayload int
}

// StartCluster runs n NATS servers in one JetStream cluster and waits until
// the cluster has a meta leader, so that streams can be created at once.
// They are shut down at t's cleanup.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartClusterConfig(t, n, ClusterConfig{})
}

// StartClusterConfig is StartCluster with cfg.
func StartClusterConfig(t testing.TB, n int, cfg ClusterConfig) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: a cluster of %d servers", n)
	}
	bin, err := natsServerBinary()
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	// Every port is picked first, so that every server can name all its
	// peers in its routes, and a restarted one comes back on its own.
	ports := freePorts(t, 3*n)
	routes := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+1])
	}
	c := &Cluster{t: t}
	for i := range n {
		pc := &processConfig{
			bin: bin, name: fmt.Sprintf("herald-test-%d", i+1), dir: t.TempDir(),
			port: ports[3*i], clusterPort: ports[3*i+1], monitorPort: ports[3*i+2],
			maxPayload: cfg.MaxPayload,
		}
		for j, r := range routes {
			if j != i {
				pc.routes = append(pc.routes, r)
			}
		}
		c.servers = append(c.servers, &Server{t: t, process: pc})
	}
	// Servers start concurrently: each waits for a quorum of peers only to
	// elect a leader, not to accept connections.
	var wg sync.WaitGroup
	for _, s := range c.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.start()
		}()
	}
	wg.Wait()
	t.Cleanup(c.Shutdown)
	c.WaitReady()
	return c
}

// freePorts reserves n loopback ports and releases them for the servers.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: reserve a port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// WaitReady waits until a running server is the JetStream meta leader and
// sees every running server as a JetStream peer, so that a stream with as
// many replicas can be placed. StartCluster calls it; call it again after
// restarting a server when the next step needs every replica.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		var running []*processConfig
		for _, s := range c.servers {
			if s.Running() {
				running = append(running, s.process)
			}
		}
		for _, p := range running {
			if p.leadsWithPeers(len(running)) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("natstest: no JetStream meta leader with every server as a peer within %s", readyTimeout)
}

// URLs is every server's client URL, comma-separated (nats.Connect's form).
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.servers))
	for i, s := range c.servers {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// Server returns the i-th server (from 0), to shut down or restart it.
func (c *Cluster) Server(i int) *Server { return c.servers[i] }

// Shutdown stops every server.
func (c *Cluster) Shutdown() {
	for _, s := range c.servers {
		s.Shutdown()
	}
}
