package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/sdk/codes"
)

// Error codes of the Herald contract (JSON-RPC 2.0 codes and Herald's own).
const (
	CodeInvalidParams     = codes.InvalidParams
	CodeMethodNotFound    = codes.MethodNotFound
	CodeInternal          = codes.Internal
	CodeUnauthenticated   = codes.Unauthenticated
	CodeForbidden         = codes.Forbidden
	CodeUnknownNamespace  = codes.UnknownNamespace
	CodeLimitExceeded     = codes.LimitExceeded
	CodeRateLimited       = codes.RateLimited
	CodePluginUnavailable = codes.PluginUnavailable
)

// Error is a coded error. A handler that returns one sends it to the caller
// unchanged; any other error becomes CodeInternal with its message, but for
// the handler's own ctx.Err() once its call's context ended, which is
// CodePluginUnavailable (the call ran out of time, as the host says of a
// call it stopped waiting for).
type Error struct {
	Code    int
	Message string
	Data    json.RawMessage // optional JSON
}

func (e *Error) Error() string { return fmt.Sprintf("error %d: %s", e.Code, e.Message) }

// Errorf builds a coded error.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithData returns a copy of e carrying data as JSON.
func (e *Error) WithData(data any) *Error {
	c := *e
	if data == nil {
		return &c
	}
	if b, err := json.Marshal(data); err == nil {
		c.Data = b
	}
	return &c
}

// Forbidden: the caller may not do this (-32003).
func Forbidden(msg string) *Error { return &Error{Code: CodeForbidden, Message: msg} }

// InvalidParams: the params are wrong; data says which (-32602).
func InvalidParams(msg string, data any) *Error {
	return (&Error{Code: CodeInvalidParams, Message: msg}).WithData(data)
}

// Unauthenticated: a token is needed or is bad (-32001).
func Unauthenticated(msg string) *Error { return &Error{Code: CodeUnauthenticated, Message: msg} }

// NotFound: no such method (-32601).
func NotFound(msg string) *Error { return &Error{Code: CodeMethodNotFound, Message: msg} }

// LimitExceeded: a bound was hit (-32005).
func LimitExceeded(msg string) *Error { return &Error{Code: CodeLimitExceeded, Message: msg} }

// Internal: the plugin failed (-32603).
func Internal(msg string) *Error { return &Error{Code: CodeInternal, Message: msg} }

// AsError returns err as a coded error: itself when it is one (or wraps one),
// CodePluginUnavailable when it comes of the State being unreachable (a
// passing condition: the caller retries later, and the host restarts a
// plugin whose Configure failed of it), CodeInternal with err's message
// otherwise.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, ErrStateUnavailable) {
		return &Error{Code: CodePluginUnavailable, Message: err.Error()}
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}

// callError is AsError for what a method or authorizer handler returned
// under ctx, its call's context. A handler that gave up because that
// context ended (it returned ctx.Err(), or an error wrapping it) did not
// fail: its call ran out of time, or the host stopped waiting for it. That
// is CodePluginUnavailable, as the host answers a call it gave up on, never
// CodeInternal. The deadline gRPC hands the plugin fires a moment before the
// host's own timer, so this answer can reach the host first: the host then
// answers its caller with its own timeout message (which names the limit),
// since the call's deadline has passed; this message is what a host that
// does not (or a harness) shows.
func callError(ctx context.Context, what string, err error) *Error {
	var e *Error
	if ctx.Err() == nil || errors.As(err, &e) ||
		!(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return AsError(err)
	}
	return &Error{Code: CodePluginUnavailable, Message: fmt.Sprintf("%s ended before it finished (%v): "+
		"it may or may not have taken effect, so retry later only what is safe to repeat", what, ctx.Err())}
}

func asTypeError(err error, target **json.UnmarshalTypeError) bool { return errors.As(err, target) }
