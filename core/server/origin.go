package server

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/core/rpc"
)

// originLogEvery bounds how often refused origins are logged: a page that
// retries in a loop must not flood the log, and one line a minute per
// origin is enough to tell the operator which key to set.
const originLogEvery = time.Minute

// maxLoggedOrigins bounds the table of origins recently logged (its keys
// come from clients).
const maxLoggedOrigins = 256

// refusedOrigins remembers when each refused origin was last logged.
type refusedOrigins struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// checkOrigin is the WebSocket upgrader's origin check: the configured
// check, plus a log line that names the refused origin and the key to set,
// because the browser only tells the page "WebSocket error".
func (s *Server) checkOrigin(r *http.Request) bool {
	if s.origins.Load().Check(r) {
		return true
	}
	origin := r.Header.Get("Origin")
	if s.refused.shouldLog(origin, time.Now()) {
		s.log.Warn("refused a WebSocket from an origin that is not allowed: add it to server.allowed_origins (then SIGHUP or restart)",
			"origin", origin, "remote", r.RemoteAddr)
	}
	return false
}

// upgradeError answers a request that the WebSocket upgrade refused in the
// JSON error form of every other endpoint, saying what to fix: gorilla's
// own answer is a bare "Forbidden" or "Bad Request".
func upgradeError(w http.ResponseWriter, r *http.Request, status int, reason error) {
	w.Header().Set("Sec-Websocket-Version", "13")
	if status == http.StatusForbidden {
		writeJSONError(w, status, rpc.CodeForbidden, fmt.Sprintf("origin %q is not allowed: add it to server.allowed_origins", r.Header.Get("Origin")))
		return
	}
	writeJSONError(w, status, rpc.CodeInvalidRequest, "this endpoint takes WebSocket connections only ("+strings.TrimPrefix(reason.Error(), "websocket: ")+")")
}

func (o *refusedOrigins) shouldLog(origin string, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.last == nil {
		o.last = make(map[string]time.Time)
	}
	if t, ok := o.last[origin]; ok && now.Sub(t) < originLogEvery {
		return false
	}
	if len(o.last) >= maxLoggedOrigins {
		for k, t := range o.last {
			if now.Sub(t) >= originLogEvery {
				delete(o.last, k)
			}
		}
		if len(o.last) >= maxLoggedOrigins {
			return false
		}
	}
	o.last[origin] = now
	return true
}
