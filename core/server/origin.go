package server

import (
	"net/http"
	"sync"
	"time"
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
