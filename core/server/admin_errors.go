package server

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// recentErrors is how many warning and error log lines the admin page
// keeps; maxErrorLine bounds each.
const (
	recentErrors = 100
	maxErrorLine = 1024
)

// errorRing keeps the last warnings and errors logged, for the admin page:
// a bounded ring, filled by the logger (an hclog sink), read by the page.
type errorRing struct {
	mu    sync.Mutex
	lines []errorLine // a ring of cap entries once full
	next  int
}

type errorLine struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Logger  string    `json:"logger"`
	Message string    `json:"message"`
}

func newErrorRing(n int) *errorRing { return &errorRing{lines: make([]errorLine, 0, n)} }

// attach registers the ring with log if log can take sinks (herald's
// serve builds an hclog.InterceptLogger; another logger leaves the ring
// empty).
func (r *errorRing) attach(log hclog.Logger) {
	if il, ok := log.(hclog.InterceptLogger); ok {
		il.RegisterSink(r)
	}
}

// Accept implements hclog.SinkAdapter: warnings and errors are kept.
func (r *errorRing) Accept(name string, level hclog.Level, msg string, args ...any) {
	if level < hclog.Warn {
		return
	}
	var b strings.Builder
	b.WriteString(msg)
	for i := 0; i+1 < len(args) && b.Len() < maxErrorLine; i += 2 {
		fmt.Fprintf(&b, " %v=%v", args[i], args[i+1])
	}
	line := errorLine{Time: time.Now().UTC(), Level: level.String(), Logger: name, Message: truncate(b.String(), maxErrorLine)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) < cap(r.lines) {
		r.lines = append(r.lines, line)
		return
	}
	r.lines[r.next] = line
	r.next = (r.next + 1) % len(r.lines)
}

// list returns the kept lines, newest first.
func (r *errorRing) list() []errorLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]errorLine, 0, len(r.lines))
	for i := len(r.lines) - 1; i >= 0; i-- {
		out = append(out, r.lines[(r.next+i)%len(r.lines)])
	}
	return out
}
