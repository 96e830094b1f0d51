package server

import (
	"io"
	"log"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// acceptWarnEvery is how often a failing accept is logged: net/http
// retries it every second at most, and one line with the count of those
// left out says as much as one a second.
const acceptWarnEvery = 10 * time.Second

// acceptErrorPrefix starts the line net/http logs when a listener's Accept
// fails with a temporary error (out of file descriptors, mostly) before it
// retries.
const acceptErrorPrefix = "http: Accept error: "

// httpErrorLog is the HTTP servers' ErrorLog. net/http's lines have no
// level, so hclog would log them at INFO; an accept that fails would then
// reach neither the admin page's errors nor anyone's attention, while the
// listener takes no new connection at all. Those become a WARN (rate
// limited, counted in herald_accept_errors_total) that says what to do;
// every other line goes on as before (rest: levels inferred).
type httpErrorLog struct {
	log     hclog.Logger
	rest    io.Writer
	accepts prometheus.Counter
	now     func() time.Time

	mu      sync.Mutex
	next    time.Time // before it, accept errors are counted, not logged
	skipped int       // accept errors not logged since the last line
}

func newHTTPErrorLog(log hclog.Logger, accepts prometheus.Counter) *httpErrorLog {
	return &httpErrorLog{
		log:     log,
		rest:    log.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}),
		accepts: accepts,
		now:     time.Now,
	}
}

// httpErrorLogger is the ErrorLog of both HTTP listeners.
func (s *Server) httpErrorLogger() *log.Logger {
	return log.New(newHTTPErrorLog(s.log, s.metrics.acceptErrors), "", 0)
}

// Write takes one line of the http.Server's log.Logger.
func (l *httpErrorLog) Write(p []byte) (int, error) {
	line, ok := strings.CutPrefix(strings.TrimRight(string(p), "\n"), acceptErrorPrefix)
	if !ok {
		return l.rest.Write(p)
	}
	l.accepts.Inc()
	l.mu.Lock()
	now := l.now()
	if now.Before(l.next) {
		l.skipped++
		l.mu.Unlock()
		return len(p), nil
	}
	l.next = now.Add(acceptWarnEvery)
	skipped := l.skipped
	l.skipped = 0
	l.mu.Unlock()

	cause, retry, _ := strings.Cut(line, "; retrying in ")
	args := []any{"error", cause}
	if retry != "" {
		args = append(args, "retrying_in", retry)
	}
	if skipped > 0 {
		args = append(args, "more_since_last_logged", skipped)
	}
	l.log.Warn(acceptAdvice(cause), args...)
	return len(p), nil
}

// acceptAdvice says what a failing accept means and what to do about it.
func acceptAdvice(cause string) string {
	switch {
	case strings.Contains(cause, "too many open files in system"): // ENFILE
		return "cannot accept new connections: the system is out of file descriptors; raise fs.file-max (sysctl) or run fewer processes on this host"
	case strings.Contains(cause, "too many open files"): // EMFILE
		return "cannot accept new connections: herald is out of file descriptors (one per connection); raise its open-file limit (LimitNOFILE in the systemd unit, ulimit -Hn; see docs/operations.md, Sizing)"
	default:
		return "cannot accept new connections; retrying until it clears"
	}
}
