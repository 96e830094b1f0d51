package server

import (
	"cmp"
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/heraldhq/herald/core/auth"
	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
)

// The operator's side of the server: the optional second listener
// (server.admin_listen) and the admin page with its JSON API under
// /admin/api/, guarded by server.admin_token.

// Bounds of what the admin API lists: it answers a person looking at a
// page, so it shows the first of each, never all of a large node.
const (
	adminMaxConnections = 100
	adminMaxChannels    = 50
)

//go:embed admin_static
var adminStatic embed.FS

// adminState is the operator side's share of a Server.
type adminState struct {
	// token is server.admin_token ("" : the page is off); SIGHUP may
	// change it.
	token   atomic.Pointer[string]
	srv     *http.Server // the admin_listen server, nil without one
	started time.Time
	errors  *errorRing
}

func (s *Server) initAdmin() {
	tok := s.cfg.Server.AdminToken
	s.admin.token.Store(&tok)
	s.admin.started = time.Now()
	s.admin.errors = newErrorRing(recentErrors)
	s.admin.errors.attach(s.log)
}

// handleOperator adds what only operators use, /metrics and the admin
// page, to mux: the admin listener's, or the public one's when there is
// none.
func (s *Server) handleOperator(mux *http.ServeMux) {
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("/metrics", methodNotAllowed("GET"))
	mux.Handle("GET /admin/{$}", s.requireAdmin(http.HandlerFunc(s.serveAdminFile)))
	mux.Handle("GET /admin/static/{file}", s.requireAdmin(http.HandlerFunc(s.serveAdminFile)))
	mux.Handle("GET /admin", http.RedirectHandler("/admin/", http.StatusMovedPermanently))
	mux.Handle("GET /admin/api/overview", s.requireAdmin(http.HandlerFunc(s.serveAdminOverview)))
	mux.Handle("GET /admin/api/connections", s.requireAdmin(http.HandlerFunc(s.serveAdminConnections)))
	mux.Handle("GET /admin/api/channels", s.requireAdmin(http.HandlerFunc(s.serveAdminChannels)))
	mux.Handle("GET /admin/api/plugins", s.requireAdmin(http.HandlerFunc(s.serveAdminPlugins)))
	mux.Handle("GET /admin/api/errors", s.requireAdmin(http.HandlerFunc(s.serveAdminErrors)))
	mux.Handle("POST /admin/api/publish", s.requireAdmin(http.HandlerFunc(s.serveAdminPublish)))
	mux.Handle("/admin/", s.requireAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, rpc.CodeMethodNotFound, "no such admin endpoint: "+r.Method+" "+r.URL.Path)
	})))
}

// AdminHandler is the mux of the operator listener (server.admin_listen):
// health and readiness as on the public one, /metrics, and the admin page.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", serveHealth)
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.HandleFunc("/healthz", methodNotAllowed("GET"))
	mux.HandleFunc("/readyz", methodNotAllowed("GET"))
	s.handleOperator(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, rpc.CodeMethodNotFound,
			"no such endpoint on the operator listener (server.admin_listen): "+r.Method+" "+r.URL.Path+"; clients and backends use server.listen")
	})
	return mux
}

func serveHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// serveReady answers 200 when the node takes traffic, else 503 naming each
// thing that is not ready (readiness).
func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	status, notReady := s.readiness()
	if len(notReady) == 0 {
		writeJSON(w, http.StatusOK, map[string]string{"status": status})
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": status, "not_ready": notReady})
}

// readiness says whether the node takes traffic: status "ready" and no
// notReady, or the first of draining, broker and plugins that is not, with
// each thing not ready named: draining, the broker's error, each plugin
// not running with its state. /readyz and the admin page's overview both
// answer from it, so that they never disagree.
func (s *Server) readiness() (status string, notReady []string) {
	status = "ready"
	if s.draining.Load() {
		notReady = append(notReady, "draining")
		status = "draining"
	}
	if c, ok := s.broker.(broker.Checker); ok {
		if err := c.Ready(); err != nil {
			if status == "ready" {
				status = "broker not ready"
			}
			notReady = append(notReady, "broker nats: "+truncate(err.Error(), 200))
		}
	}
	if !s.plugins.Ready() {
		if status == "ready" {
			status = "plugins not ready"
		}
		named := false
		for _, p := range s.plugins.Status() {
			if p.State != pluginhost.StateRunning {
				what := fmt.Sprintf("plugin %s: %s", p.Name, p.State)
				if p.LastError != "" {
					what += " (" + truncate(p.LastError, 1000) + ")"
				}
				notReady = append(notReady, what)
				named = true
			}
		}
		if !named {
			notReady = append(notReady, "plugins not ready")
		}
	}
	return status, notReady
}

// listenAdmin opens server.admin_listen, with the public listener's TLS
// certificate when server.tls is set; nil without admin_listen.
func (s *Server) listenAdmin() (net.Listener, error) {
	addr := s.cfg.Server.AdminListen
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (server.admin_listen): %w", addr, err)
	}
	return s.cert.listener(ln), nil
}

// serveAdmin serves the operator listener until shutdownAdmin.
func (s *Server) serveAdmin(ln net.Listener) {
	s.admin.srv = s.newHTTPServer(s.AdminHandler(), s.httpSrv.ErrorLog)
	srv := s.admin.srv
	s.log.Info("admin listener", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", "addr", ln.Addr().String(), "error", err)
		}
	}()
}

// shutdownAdmin stops the operator listener, last: while the node drains,
// its /readyz keeps saying so.
func (s *Server) shutdownAdmin(ctx context.Context) error {
	if s.admin.srv == nil {
		return nil
	}
	if err := s.admin.srv.Shutdown(ctx); err != nil {
		_ = s.admin.srv.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	return nil
}

// requireAdmin lets through requests that carry server.admin_token, as a
// bearer token (scripts) or as the password of HTTP basic authentication
// (the browser asks for it; any user name). Without a configured token
// the admin page is off: 404, saying how to turn it on.
func (s *Server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := *s.admin.token.Load()
		if want == "" {
			writeJSONError(w, http.StatusNotFound, rpc.CodeMethodNotFound, "the admin page is off: set server.admin_token to turn it on")
			return
		}
		got := auth.BearerToken(r)
		if _, pass, ok := r.BasicAuth(); ok {
			got = pass
		}
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="herald admin", charset="UTF-8"`)
			msg := "admin token required: send Authorization: Bearer <server.admin_token>, or log in with it as the password"
			if got != "" {
				msg = "wrong admin token: it is server.admin_token, sent as Authorization: Bearer <token> or as the password"
			}
			writeJSONError(w, http.StatusUnauthorized, rpc.CodeUnauthenticated, msg)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) serveAdminFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(adminStatic, "admin_static/"+name)
	if err != nil {
		writeJSONError(w, http.StatusNotFound, rpc.CodeMethodNotFound, "no such admin file: "+name)
		return
	}
	ctype := mime.TypeByExtension(name[strings.LastIndexByte(name, '.'):])
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	// The page loads nothing from elsewhere; say so to the browser too.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
}

type adminConnection struct {
	ID            string    `json:"id"`
	User          string    `json:"user"`
	Remote        string    `json:"remote"`
	Since         time.Time `json:"since"`
	Subscriptions int       `json:"subscriptions"`
	QueuedBytes   int       `json:"queued_bytes"`
}

// adminConnections lists the connections: the count and the oldest
// adminMaxConnections.
func (s *Server) adminConnections() (int, []adminConnection) {
	list := []adminConnection{} // [] in the JSON when there is none, as channels'
	s.eachSession(func(ss *session) {
		ss.mu.Lock()
		n := ss.subs.len()
		ss.mu.Unlock()
		c := adminConnection{ID: ss.id, User: ss.UserID(), Remote: ss.conn.RemoteAddr().String(), Subscriptions: n, QueuedBytes: ss.conn.QueuedBytes()}
		if id, err := ulid.ParseStrict(ss.id); err == nil {
			c.Since = ulid.Time(id.Time()).UTC()
		}
		list = append(list, c)
	})
	total := len(list)
	slices.SortFunc(list, func(a, b adminConnection) int { return cmp.Compare(a.ID, b.ID) }) // ULIDs: oldest first
	return total, list[:min(len(list), adminMaxConnections)]
}

type adminChannel struct {
	Channel     string `json:"channel"`
	Subscribers int    `json:"subscribers"`
}

// adminChannels counts the connections subscribed to each channel and
// returns how many channels have any, and the adminMaxChannels with the
// most. It walks every connection's subscriptions: cheap for a page that
// asks every few seconds, and nothing on the delivery path pays for it.
func (s *Server) adminChannels() (int, []adminChannel) {
	counts := make(map[string]int)
	s.eachSession(func(ss *session) {
		ss.mu.Lock()
		for ch := range ss.subs.all() {
			counts[ch]++
		}
		ss.mu.Unlock()
	})
	list := make([]adminChannel, 0, len(counts))
	for ch, n := range counts {
		list = append(list, adminChannel{Channel: ch, Subscribers: n})
	}
	slices.SortFunc(list, func(a, b adminChannel) int {
		return cmp.Or(cmp.Compare(b.Subscribers, a.Subscribers), cmp.Compare(a.Channel, b.Channel))
	})
	return len(counts), list[:min(len(list), adminMaxChannels)]
}

func (s *Server) serveAdminConnections(w http.ResponseWriter, _ *http.Request) {
	n, list := s.adminConnections()
	writeJSON(w, http.StatusOK, map[string]any{"count": n, "shown": len(list), "connections": list})
}

func (s *Server) serveAdminChannels(w http.ResponseWriter, _ *http.Request) {
	n, list := s.adminChannels()
	writeJSON(w, http.StatusOK, map[string]any{"count": n, "shown": len(list), "channels": list})
}

func (s *Server) serveAdminPlugins(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"plugins": s.plugins.Status()})
}

func (s *Server) serveAdminErrors(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"errors": s.admin.errors.list()})
}

func (s *Server) serveAdminOverview(w http.ResponseWriter, _ *http.Request) {
	_, notReady := s.readiness()
	writeJSON(w, http.StatusOK, map[string]any{
		"version":       s.version,
		"started":       s.admin.started.UTC(),
		"draining":      s.draining.Load(),
		"ready":         len(notReady) == 0,
		"not_ready":     notReady,
		"connections":   s.sessionCount(),
		"subscriptions": s.hub.Subscriptions(),
	})
}

// sessionCount is the number of registered connections.
func (s *Server) sessionCount() int {
	s.sessionsMu.RLock()
	defer s.sessionsMu.RUnlock()
	return len(s.sessions)
}

// serveAdminPublish publishes one notification from the admin page's form,
// with the checks of POST /v1/publish. It takes JSON only: a cross-site
// form cannot send that without a preflight this server never grants, so
// a browser holding the admin login cannot be made to publish by another
// page.
func (s *Server) serveAdminPublish(w http.ResponseWriter, r *http.Request) {
	accepted := time.Now()
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		writeJSONError(w, http.StatusUnsupportedMediaType, rpc.CodeInvalidRequest, "Content-Type: must be application/json")
		return
	}
	limit := s.live().Limits.MaxPublishBytes
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		writeBodyError(w, err, limit, s.cfg.Server.ReadTimeout)
		return
	}
	n, err := parseNotification(body)
	ns := []broker.Notification{n}
	if err == nil {
		err = s.publishable(ns)
	}
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, rpc.CodeInvalidParams, err.Error())
		return
	}
	results, err := s.publishFrom(r.Context(), sourceHTTP, accepted, ns)
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, rpc.CodeInternal, err.Error())
		return
	}
	s.log.Info("admin page published", "channel", n.Channel, "event", n.Event, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

// eachSession calls f for every open connection. The list is copied first,
// so that f (which may take a connection's lock) never holds up the
// registration of new connections.
func (s *Server) eachSession(f func(ss *session)) {
	s.sessionsMu.RLock()
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.sessionsMu.RUnlock()
	for _, ss := range all {
		f(ss)
	}
}
