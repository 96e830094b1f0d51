package rpc

import (
	"encoding/json"
	"fmt"

	"github.com/heraldhq/herald/sdk/codes"
)

// Error codes of CONTRACT.md section 3.
const (
	CodeParseError        = codes.ParseError
	CodeInvalidRequest    = codes.InvalidRequest
	CodeMethodNotFound    = codes.MethodNotFound
	CodeInvalidParams     = codes.InvalidParams
	CodeInternal          = codes.Internal
	CodeUnauthenticated   = codes.Unauthenticated
	CodeForbidden         = codes.Forbidden
	CodeUnknownNamespace  = codes.UnknownNamespace
	CodeLimitExceeded     = codes.LimitExceeded
	CodeRateLimited       = codes.RateLimited
	CodePluginUnavailable = codes.PluginUnavailable
)

// Error is a JSON-RPC error object. It is also a Go error, so that any layer
// can return one and the transport sends it to the client unchanged.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("rpc error %d: %s", e.Code, e.Message) }

// Errorf builds an *Error with a formatted message.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithData returns a copy of e carrying data, marshalled to JSON.
func (e *Error) WithData(data any) *Error {
	b, err := json.Marshal(data)
	if err != nil {
		return e
	}
	c := *e
	c.Data = b
	return &c
}
