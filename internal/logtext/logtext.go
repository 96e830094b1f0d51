// Package logtext builds hclog loggers whose JSON form writes a
// time.Duration as its text ("backoff":"200ms"), as hclog's text form
// does, rather than as integer nanoseconds ("backoff":200000000).
//
// Herald's own logger and the plugins' (the SDK's, whose JSON lines the
// host re-logs) are built here, so that a duration reads the same in every
// log line whatever log.format says. It knows nothing of Herald's config.
package logtext

import (
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
)

// New is hclog.New with durations written as text.
func New(opts *hclog.LoggerOptions) hclog.Logger {
	o := hook(opts)
	// hclog hooks only subloggers: the root is a sublogger of itself.
	return hclog.New(o).ResetNamed(o.Name)
}

// NewIntercept is hclog.NewInterceptLogger with durations written as text.
func NewIntercept(opts *hclog.LoggerOptions) hclog.InterceptLogger {
	o := hook(opts)
	return hclog.NewInterceptLogger(o).ResetNamedIntercept(o.Name)
}

func hook(opts *hclog.LoggerOptions) *hclog.LoggerOptions {
	o := *opts
	next := o.SubloggerHook
	o.SubloggerHook = func(sub hclog.Logger) hclog.Logger {
		if next != nil {
			sub = next(sub)
		}
		return durationsAsText{sub}
	}
	return &o
}

// durationsAsText logs the time.Duration values of its arguments as their
// String form. Subloggers it makes (Named, With) are wrapped by the hook.
type durationsAsText struct{ hclog.Logger }

func (l durationsAsText) Log(level hclog.Level, msg string, args ...any) {
	l.Logger.Log(level, msg, textDurations(args)...)
}
func (l durationsAsText) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l durationsAsText) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l durationsAsText) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l durationsAsText) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l durationsAsText) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }
func (l durationsAsText) With(args ...any) hclog.Logger {
	return l.Logger.With(textDurations(args)...)
}

// textDurations returns args with each time.Duration value (odd
// positions: the values of key/value pairs) replaced by its String.
func textDurations(args []any) []any {
	var out []any
	for i := 1; i < len(args); i += 2 {
		if d, ok := args[i].(time.Duration); ok {
			if out == nil {
				out = slices.Clone(args)
			}
			out[i] = d.String()
		}
	}
	if out == nil {
		return args
	}
	return out
}
