package pluginhost

import (
	"bytes"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// pluginLogger is the logger go-plugin gets for one plugin process. It
// writes to herald's log with plugin=<name> once, and takes out what would
// repeat a key or a field the line already has:
//
//   - go-plugin adds "plugin"=<binary path> to its own lines ("plugin
//     process exited"): renamed "command";
//   - it forwards each JSON line the plugin's SDK logger writes with the
//     plugin's own "timestamp" and "@module" (its name): herald's log line
//     has its own time and names the plugin already, so both are dropped;
//   - a "plugin" key a plugin logs itself is renamed "plugin_value".
//
// The lines it writes are bounded by a budget (log.plugin_lines_per_second):
// a plugin that floods its log must not slow herald down.
type pluginLogger struct {
	hclog.Logger
	name    string
	command string
	budget  *logBudget
	// dryRun: the process is a check (herald validate, a reload's dry
	// run) that herald ends itself, so go-plugin's "plugin process exited"
	// (an ERROR for the kill that ends a check) is only a debug line.
	dryRun bool
}

func newPluginLogger(base hclog.Logger, name, command string, linesPerSecond int) *pluginLogger {
	return &pluginLogger{Logger: base.With("plugin", name), name: name, command: command,
		budget: &logBudget{rate: float64(linesPerSecond), tokens: float64(linesPerSecond)}}
}

// logBudget is a token bucket of log lines: rate a second, up to a second's
// worth at once. Lines past it are dropped and counted.
type logBudget struct {
	mu      sync.Mutex
	rate    float64 // 0: no bound
	tokens  float64
	last    time.Time
	dropped int
}

// take reports whether a line may be written now and, if it may, how many
// were dropped since the last one written.
func (b *logBudget) take(now time.Time) (ok bool, dropped int) {
	if b.rate <= 0 {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		b.dropped++
		return false, 0
	}
	b.tokens--
	dropped, b.dropped = b.dropped, 0
	return true, dropped
}

// admit reports whether a line at level is written: it is enabled, and
// within the budget. The first line after some were dropped is preceded by
// a warning that counts them.
func (l *pluginLogger) admit(level hclog.Level) bool {
	if level < l.Logger.GetLevel() {
		return false // dropped by the logger anyway: it costs no budget
	}
	ok, dropped := l.budget.take(time.Now())
	if ok && dropped > 0 {
		l.Logger.Warn("plugin log lines dropped: the plugin wrote more than log.plugin_lines_per_second", "dropped", dropped)
	}
	return ok
}

func (l *pluginLogger) clean(args []any) []any {
	out := make([]any, 0, len(args))
	for i := 0; i+1 < len(args); i += 2 {
		k, v := args[i], args[i+1]
		switch k {
		case "timestamp", "@module":
			continue
		case "plugin":
			if s, ok := v.(string); ok && s == l.command {
				k = "command"
			} else {
				k = "plugin_value"
			}
		}
		out = append(out, k, v)
	}
	if len(args)%2 == 1 {
		out = append(out, args[len(args)-1])
	}
	return out
}

func (l *pluginLogger) wrap(inner hclog.Logger) hclog.Logger {
	return &pluginLogger{Logger: inner, name: l.name, command: l.command, budget: l.budget, dryRun: l.dryRun}
}

func (l *pluginLogger) Log(level hclog.Level, msg string, args ...any) {
	if l.dryRun && msg == "plugin process exited" {
		level = hclog.Debug
	}
	if l.admit(level) {
		l.Logger.Log(level, msg, l.clean(args)...)
	}
}
func (l *pluginLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *pluginLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *pluginLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *pluginLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *pluginLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// maxOutputLine bounds one line of a plugin's plain output, as go-plugin
// bounds its log lines.
const maxOutputLine = 64 << 10

// outputWriter turns what a plugin writes to its stdout or stderr after it
// started (go-plugin carries both over its connection) into lines of
// herald's log, at info with stream=stdout|stderr: a plugin author's
// fmt.Println must not vanish. A line longer than maxOutputLine is cut.
//
// go-plugin never tells the writer that the stream ended, so Close is
// called once the plugin process is gone (instance.kill): it logs the last
// line if it had no newline (a plugin's fmt.Print just before it exits).
// What still arrives after Close is logged as it comes, partial lines
// included: nothing would flush them later.
type outputWriter struct {
	log    hclog.Logger
	stream string
	mu     sync.Mutex
	buf    []byte
	closed bool
}

func (w *outputWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p[:min(len(p), maxOutputLine-len(w.buf))]...)
			break
		}
		w.buf = append(w.buf, p[:min(i, maxOutputLine-len(w.buf))]...)
		p = p[i+1:]
		w.flushLocked()
	}
	if w.closed && len(w.buf) > 0 {
		w.flushLocked()
	}
	return n, nil
}

// Close logs the last line, which had no newline, if there is one: the
// stream is at its end.
func (w *outputWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if len(w.buf) > 0 {
		w.flushLocked()
	}
	return nil
}

func (w *outputWriter) flushLocked() {
	w.log.Info(string(bytes.TrimRight(w.buf, "\r")), "stream", w.stream)
	w.buf = w.buf[:0]
}

func (l *pluginLogger) With(args ...any) hclog.Logger { return l.wrap(l.Logger.With(l.clean(args)...)) }
func (l *pluginLogger) Named(name string) hclog.Logger {
	return l.wrap(l.Logger.Named(name))
}
func (l *pluginLogger) ResetNamed(name string) hclog.Logger {
	return l.wrap(l.Logger.ResetNamed(name))
}
