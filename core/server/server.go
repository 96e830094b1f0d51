package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/oklog/ulid/v2"

	"github.com/heraldhq/herald/core/auth"
	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/hub"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/core/transport"
)

// Options configure a Server.
type Options struct {
	Config  *config.Config
	Logger  hclog.Logger
	Version string
	// Broker defaults to a memory broker sized by the history config.
	Broker broker.Broker
}

// ClusterPresence is presence across the nodes of a cluster.
type ClusterPresence interface {
	Presence(ctx context.Context, channel string) (count int, users []string, err error)
}

// Server is herald's running core.
type Server struct {
	cfg     *config.Config
	log     hclog.Logger
	version string
	broker  broker.Broker
	hub     *hub.Hub
	// clusterPresence answers presence across nodes; nil on one node.
	clusterPresence ClusterPresence
	tokens          atomic.Pointer[auth.Tokens]  // swapped by Reload
	apiKeys         atomic.Pointer[auth.APIKeys] // swapped by Reload
	plugins         Plugins
	metrics         *metrics
	callTimeout     time.Duration

	upgrader websocket.Upgrader
	topts    transport.Options

	sessionsMu sync.RWMutex
	sessions   map[string]*session
	pubConns   publishers // backends' publishing WebSockets (publishws.go)
	conns      sync.WaitGroup

	idem *idempotency
	held heldSubs // plugin subscriptions waiting for their call's reply (held.go)

	// What SIGHUP may change (reload.go): who may open a WebSocket, and
	// the TLS certificate (nil without server.tls).
	origins  atomic.Pointer[auth.Origins]
	refused  refusedOrigins // origins logged lately (origin.go)
	cert     *certificate
	reloadMu sync.Mutex
	reloaded *config.Config                    // the config of the last reload
	conf     atomic.Pointer[config.Config]     // what live() reads (reload.go)
	connOpts atomic.Pointer[transport.Options] // for connections opened from now on

	followers followerCounts // plugin follows per channel (follow.go)
	admin     adminState     // operator listener and admin page (admin.go)

	draining   atomic.Bool
	publishing inflight // POST /v1/publish requests under way, which Shutdown lets finish
	// callsCut is cancelled by Shutdown once the clients are closed: the
	// backends' plugin calls still running then (a kb.waitFor, say) are
	// cut, rather than holding the drain to its bound.
	callsCut context.Context
	cutCalls context.CancelFunc
	httpSrv  *http.Server
	overload overloadState

	// Test hooks: after a connection is upgraded, before it is
	// registered; after Shutdown closed the connections it found.
	testUpgraded, testClosedAll func()
	// beforeBrokerClose runs at shutdown between the last connection and
	// the broker's close (the plugin host stops its plugins there);
	// brokerClosed refuses publishes once the broker is closed.
	beforeBrokerClose []func(ctx context.Context) error
	brokerClosed      atomic.Bool
}

// New builds a server from its config.
func New(opts Options) (*Server, error) {
	if opts.Config == nil {
		return nil, errors.New("server: no config")
	}
	cfg := opts.Config
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	b := opts.Broker
	if b == nil {
		b = broker.NewMemory(broker.MemoryOptions{HistorySize: cfg.History.Size, HistoryTTL: cfg.History.TTL, MaxBytes: cfg.History.MaxBytes})
	}
	callsCut, cutCalls := context.WithCancel(context.Background())
	s := &Server{
		callsCut:    callsCut,
		cutCalls:    cutCalls,
		cfg:         cfg,
		log:         opts.Logger,
		version:     opts.Version,
		broker:      b,
		plugins:     noPlugins{},
		metrics:     newMetrics(),
		callTimeout: cfg.Limits.CallTimeout,
		sessions:    make(map[string]*session),
		idem:        newIdempotency(cfg.History.TTL, cfg.Limits.IdempotencyBytes),
	}
	s.origins.Store(auth.NewOrigins(cfg.Server.AllowedOrigins))
	s.tokens.Store(auth.NewTokens(cfg.Auth.TokenSecret))
	s.apiKeys.Store(auth.NewAPIKeys(cfg.Auth.APIKeys))
	s.conf.Store(cfg)
	cert, err := newCertificate(cfg)
	if err != nil {
		return nil, err
	}
	s.cert = cert
	s.hub = hub.New(b)
	// A joining connection buffers live publications while it pages
	// through missed ones: as many as the history or its outbox holds.
	s.hub.SetRecoveryLimit(max(cfg.History.Size, cfg.Delivery.OutboxLimit))
	b.SetHandler(s.hub)
	if m, ok := b.(*broker.Memory); ok {
		m.SetKeep(s.hub.HasSubscribers)
		s.metrics.registerHistory(m.Stats)
	}
	s.metrics.registerOutbox(s)
	s.initAdmin()
	s.upgrader = websocket.Upgrader{
		// gorilla reads through transport's framer, which buffers the
		// socket itself (and only while there is input): gorilla's own
		// buffer, held for the connection's life, needs only gorilla's
		// minimum (a control frame's payload).
		ReadBufferSize:  128,
		WriteBufferSize: 4096,
		// Write buffers are taken only while a frame is written, so idle
		// connections hold none.
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     s.checkOrigin,
		Error:           upgradeError,
	}
	s.topts = transport.Options{
		MaxBatch:     cfg.Delivery.MaxBatch,
		MaxDelay:     cfg.Delivery.MaxDelay,
		OutboxLimit:  cfg.Delivery.OutboxLimit,
		OutboxBytes:  cfg.Delivery.OutboxBytes,
		WriteTimeout: cfg.Delivery.WriteTimeout,
		Writers:      cfg.Delivery.Writers,
		NoURing:      !cfg.Delivery.IOUring,
		Observer:     s.metrics,
	}
	s.hub.OnGroupEnd(s.topts.EndGroup)
	s.connOpts.Store(&s.topts)
	return s, nil
}

// SetPlugins connects the plugin host. Call it before Serve.
func (s *Server) SetPlugins(p Plugins) {
	if p != nil {
		s.plugins = p
		s.metrics.setDeclarer(p)
	}
}

// SetClusterPresence makes presence (the client method and plugins')
// answer for the whole cluster, each node contributing its LocalPresence.
// Call it before Serve; without it presence is this node's alone.
func (s *Server) SetClusterPresence(p ClusterPresence) { s.clusterPresence = p }

// OpenChannels reports whether clients may subscribe to open channels
// (auth.open_channels, as the last reload left it): the plugin host
// refuses a plugin's emit to one while they may not, as publishable
// refuses a backend's publish.
func (s *Server) OpenChannels() bool { return s.live().Auth.OpenChannels }

// Hub exposes the subscriptions of this node (for the plugin host).
func (s *Server) Hub() *hub.Hub { return s.hub }

// Handler is the server's HTTP mux.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	mux.HandleFunc("POST /v1/publish", s.requireAPIKey(s.servePublish))
	mux.HandleFunc("GET /v1/publish/ws", s.requireAPIKey(s.servePublishWS))
	mux.HandleFunc("/v1/publish/ws", methodNotAllowed("GET"))
	// Without this, another method falls through to the plugin routes
	// below and reads as a 404.
	mux.HandleFunc("/v1/publish", methodNotAllowed("POST"))
	mux.HandleFunc("POST /v1/plugins/{plugin}/{method}", s.requireAPIKey(s.servePluginCall))
	mux.HandleFunc("GET /v1/plugins", s.requireAPIKey(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"plugins": s.plugins.Status()})
	}))
	mux.HandleFunc("GET /healthz", serveHealth)
	mux.HandleFunc("GET /readyz", s.serveReady)
	// Another method on these paths is a 405 naming the right one, rather
	// than a fall through to the plugin routes and a 404.
	for path, allow := range map[string]string{"/ws": "GET", "/v1/plugins/{plugin}/{method}": "POST", "/v1/plugins": "GET", "/healthz": "GET", "/readyz": "GET"} {
		mux.HandleFunc(path, methodNotAllowed(allow))
	}
	if s.cfg.Server.AdminListen == "" {
		s.handleOperator(mux) // else on the operator listener only (AdminHandler)
	} else {
		mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
			writeJSONError(w, http.StatusNotFound, rpc.CodeMethodNotFound,
				"/metrics is served on the operator listener (server.admin_listen = "+s.cfg.Server.AdminListen+"), not here")
		})
		mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
			writeJSONError(w, http.StatusNotFound, rpc.CodeMethodNotFound,
				"the admin page is served on the operator listener (server.admin_listen = "+s.cfg.Server.AdminListen+"), not here")
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.plugins.ServeHTTP(w, r) })
	return mux
}

// Serve accepts connections on ln until ctx ends, then drains: in-flight
// HTTP requests finish, clients get close code 1001.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.httpSrv = s.newHTTPServer(s.Handler(), s.httpErrorLogger())
	s.httpSrv.Protocols = serveProtocols()
	s.httpSrv.HTTP2 = s.serveHTTP2()
	// Streamed plugin routes (kb's notifications) never end on their own:
	// draining ends them, or Shutdown would wait for them until its timeout.
	if p, ok := s.plugins.(interface{ EndStreams() }); ok {
		s.httpSrv.RegisterOnShutdown(p.EndStreams)
	}
	adminLn, err := s.listenAdmin()
	if err != nil {
		return err
	}
	if adminLn != nil {
		s.serveAdmin(adminLn)
	}
	bg, stopBg := context.WithCancel(context.Background())
	var bgDone sync.WaitGroup
	bgDone.Add(3)
	go func() { defer bgDone.Done(); s.watchOverload(bg) }()
	go func() { defer bgDone.Done(); s.sweep(bg) }()
	go func() { defer bgDone.Done(); s.heartbeat(bg) }()
	defer func() { stopBg(); bgDone.Wait() }()

	ln = s.cert.listener(quietListen(ln))
	errc := make(chan error, 1)
	go func() { errc <- s.httpSrv.Serve(ln) }()
	s.log.Info("listening", "addr", ln.Addr().String())
	s.logWrites()
	select {
	case err := <-errc:
		return errors.Join(fmt.Errorf("serve %s: %w", ln.Addr(), err), s.shutdownAdmin(context.Background()))
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return s.Shutdown(shutCtx)
}

// Shutdown stops accepting, lets in-flight publishes finish, then closes
// every client with 1001 after a $server shutdown notification, waits for
// the other HTTP requests under way, runs what BeforeBrokerClose
// registered (the plugins stop), and closes the broker.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.log.Info("draining")
	// The listener closes at once; the requests under way go on, and this
	// waits for them below. Only publishes hold the clients' shutdown (so
	// that what they accepted reaches the clients still connected): a
	// plugin call waiting on a client, say, must not.
	httpDone := make(chan error, 1)
	if s.httpSrv != nil {
		go func() { httpDone <- s.httpSrv.Shutdown(ctx) }()
	} else {
		httpDone <- nil
	}
	var err error
	if werr := s.publishing.wait(ctx); werr != nil {
		err = fmt.Errorf("shutdown: publishes still running: %w", werr)
	}
	// serveWS registers a connection only under sessionsMu (which
	// eachSession takes) and only while not draining: one accepted
	// meanwhile is either found here or closed by serveWS itself.
	s.eachSession((*session).goAway)
	s.pubConns.goAway()
	if s.testClosedAll != nil {
		s.testClosedAll()
	}
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("shutdown: connections still open: %w", ctx.Err()))
	}
	s.cutCalls()
	err = errors.Join(err, <-httpDone)
	for _, f := range s.beforeBrokerClose {
		err = errors.Join(err, f(ctx))
	}
	s.brokerClosed.Store(true)
	return errors.Join(err, s.shutdownAdmin(ctx), s.broker.Close())
}

// BeforeBrokerClose registers f to run at shutdown once every client
// connection is closed and before the broker closes: plugins stopped there
// still publish what they emit while they drain. Call it before Serve.
func (s *Server) BeforeBrokerClose(f func(ctx context.Context) error) {
	s.beforeBrokerClose = append(s.beforeBrokerClose, f)
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSONError(w, http.StatusServiceUnavailable, -32603, "server is shutting down")
		return
	}
	token := r.URL.Query().Get("token")
	if token == "" {
		token = auth.BearerToken(r)
	}
	conn, err := transport.Upgrade(&s.upgrader, w, r, s.connOpts.Load())
	if err != nil {
		return // the upgrader answered already
	}
	conn.SetReadLimit(s.live().Limits.MaxFrameBytes, "limits.max_frame_bytes")
	ss := newSession(s, conn, newID())
	conn.BeforeTooBig(ss.replying.Wait) // calls under way are answered before a 1009
	if !s.cfg.Auth.Anonymous {
		// Until a token is accepted (setIdentity restores the full one).
		conn.SetOutboxBytes(preAuthOutboxBytes(s.live()))
	}

	if token != "" {
		id, err := s.tokens.Load().Verify(token)
		if err == nil {
			if rerr := ss.setIdentity(id); rerr != nil {
				err = errors.New(rerr.Message)
			}
		}
		if err != nil {
			conn.Close(transport.CloseAuthFailed, truncate("authentication failed: "+err.Error(), 120))
			_ = conn.ReadLoop(func([]byte) {})
			return
		}
	}
	if s.testUpgraded != nil {
		s.testUpgraded()
	}
	s.sessionsMu.Lock()
	draining := s.draining.Load()
	if !draining {
		s.conns.Add(1)
		s.sessions[ss.id] = ss
	}
	s.sessionsMu.Unlock()
	if draining {
		// Accepted while Shutdown was closing the others: it goes the
		// same way (1001), since Shutdown will not find it.
		ss.goAway()
		_ = conn.ReadLoop(func([]byte) {})
		return
	}
	s.metrics.connections.Inc()
	if token != "" || s.cfg.Auth.Anonymous {
		ss.announce()
	} else {
		time.AfterFunc(s.live().Auth.AuthTimeout, func() {
			if !ss.identified() {
				conn.Close(transport.CloseAuthFailed, "authentication required: no token within the time allowed")
			}
		})
	}
	// Read in the background: on Linux an idle connection holds no
	// goroutine (transport.Conn.Serve).
	conn.Serve(ss.handleFrame, func(error) {
		defer s.conns.Done()
		ss.end()
		s.sessionsMu.Lock()
		delete(s.sessions, ss.id)
		s.sessionsMu.Unlock()
		s.metrics.connections.Dec()
	})
}

// goAway tells a client the server is shutting down and closes with 1001.
func (ss *session) goAway() {
	ss.sendServer("shutdown", "server", []byte(`{"message":"Server shutting down"}`))
	ss.conn.Close(transport.CloseGoingAway, "server shutdown")
}

func (s *Server) session(id string) *session {
	s.sessionsMu.RLock()
	defer s.sessionsMu.RUnlock()
	return s.sessions[id]
}

// heartbeat pings silent connections every server.ping_interval and closes
// those that do not answer (transport.Conn.Heartbeat): a peer that vanished
// without closing (a pulled cable, a suspended laptop) would otherwise hold
// its subscriptions and presence until TCP keepalive gives up, minutes
// later.
func (s *Server) heartbeat(ctx context.Context) {
	interval := s.cfg.Server.PingInterval
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var all []*session
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.sessionsMu.RLock()
		for _, ss := range s.sessions {
			all = append(all, ss)
		}
		s.sessionsMu.RUnlock()
		s.pubConns.heartbeat(interval)
		closed := 0
		for _, ss := range all {
			if !ss.conn.Heartbeat(interval) {
				closed++
			}
		}
		if closed > 0 {
			s.log.Info("closed silent connections", "count", closed, "code", transport.CloseNoPong, "ping_interval", interval)
		}
		clear(all)
		all = all[:0]
	}
}

// sweep forgets idle channels of the memory broker now and then.
func (s *Server) sweep(ctx context.Context) {
	m, ok := s.broker.(*broker.Memory)
	if !ok {
		return
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.Sweep(now, s.hub.HasSubscribers)
		}
	}
}

func newID() string { return ulid.Make().String() }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// logWrites says once how the writers write to sockets (delivery.io_uring).
func (s *Server) logWrites() {
	if !s.cfg.Delivery.IOUring {
		s.log.Info("writing to sockets with write(2): delivery.io_uring is false")
		return
	}
	if err := transport.URingStatus(); err != nil {
		s.log.Info("writing to sockets with write(2)", "reason", err.Error())
		return
	}
	s.log.Info("writing fan-outs to sockets through io_uring")
}

// inflight counts requests under way, so that Shutdown can wait until
// none is (a sync.WaitGroup may not be added to while it is waited on).
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n falls to 0; made by wait
}

func (f *inflight) start() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *inflight) done() {
	f.mu.Lock()
	if f.n--; f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
	f.mu.Unlock()
}

// wait returns once no request is under way, or ctx's error.
func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return nil
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	idle := f.idle
	f.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
