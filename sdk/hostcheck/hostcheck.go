package hostcheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/sdk/codes"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// Error is what the host answers in place of what the plugin sent: a code
// of package codes, Herald's message, and data (one JSON value, or none).
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("error %d: %s", e.Code, e.Message) }

func errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// What a plugin answers reaches clients inside frames the core writes by
// splicing bytes and HTTP bodies: a plugin is code the operator may not
// have written, so each answer is checked once, before anything splices it.

// ValidJSON reports whether b is exactly one JSON value (surrounding
// whitespace allowed, trailing data not) in UTF-8: what may be spliced
// into a WebSocket text frame as a member's value. json.Valid alone
// accepts invalid UTF-8 inside strings.
func ValidJSON(b []byte) bool { return utf8.Valid(b) && json.Valid(b) }

// Result refuses a call's result that is not exactly one JSON value:
// spliced as it is after `"result":`, anything more would forge members of
// the client's frame (another method, another notification). An empty
// result is the host's "null" and is not given here.
func Result(plugin, method string, res []byte) *Error {
	if !utf8.Valid(res) {
		// The answer goes out in a WebSocket text frame, which must be
		// UTF-8: a client would fail its connection on it.
		return errorf(codes.Internal, "plugin %q answered %s with bytes that are not UTF-8", plugin, method)
	}
	if !json.Valid(res) {
		return errorf(codes.Internal, "plugin %q answered %s with a result that is not one valid JSON value", plugin, method)
	}
	return nil
}

// pluginCodes are the codes a plugin's error may carry to a client: those
// of the contract's table (CONTRACT.md section 3) that say something about
// a call. Parse error and invalid request describe the client's frame,
// which the plugin never saw, so they are not among them.
var pluginCodes = map[int]bool{
	codes.MethodNotFound:    true,
	codes.InvalidParams:     true,
	codes.Internal:          true,
	codes.Unauthenticated:   true,
	codes.Forbidden:         true,
	codes.UnknownNamespace:  true,
	codes.LimitExceeded:     true,
	codes.RateLimited:       true,
	codes.PluginUnavailable: true,
}

// PluginCode reports whether a plugin's error may carry code to a client
// as it is.
func PluginCode(code int) bool { return pluginCodes[code] }

// PluginError is the error a plugin's caller gets for the plugin's error
// (code, message, data). Clients branch on the contract's codes, so a code
// outside them becomes -32603, the message kept and the code named in it;
// an empty message is given one naming the plugin. Data that is not one
// JSON value (it would be spliced after `"data":`) is dropped, and the
// message says so.
func PluginError(plugin string, code int, message string, data []byte) *Error {
	out := &Error{Code: code, Message: message}
	if !pluginCodes[out.Code] {
		if out.Message == "" {
			out.Message = fmt.Sprintf("plugin %q failed with error code %d, which is not one of Herald's", plugin, out.Code)
		} else {
			out.Message = fmt.Sprintf("%s (plugin %q's error code %d is not one of Herald's)", out.Message, plugin, out.Code)
		}
		out.Code = codes.Internal
	}
	if out.Message == "" {
		out.Message = fmt.Sprintf("plugin %q failed and gave no message", plugin)
	}
	if len(data) > 0 {
		if ValidJSON(data) {
			out.Data = data
		} else {
			out.Message += fmt.Sprintf(" (plugin %q's error data was not valid JSON and was dropped)", plugin)
		}
	}
	return out
}

// ClientMethod refuses a plugin's call of a client's local interface that
// names a method only Herald sends (CONTRACT.md section 3: a notification).
func ClientMethod(method string) *Error {
	if method == "onNotificationReceived" {
		return errorf(codes.MethodNotFound, "onNotificationReceived is Herald's own delivery and cannot be called: emit notifications instead")
	}
	return nil
}

// ClientParams checks the params of a plugin's call to a client: spliced
// after `"params":` in the request frame, they must be one JSON object or
// array, as JSON-RPC 2.0 wants params. None (empty or null) sends a
// request without params (nil).
func ClientParams(plugin, method string, params []byte) ([]byte, *Error) {
	t := bytes.TrimSpace(params)
	if len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	if !utf8.Valid(t) {
		return nil, errorf(codes.InvalidParams, "plugin %q: the params of %s are not UTF-8; a WebSocket text frame must be", plugin, method)
	}
	if (t[0] != '{' && t[0] != '[') || !json.Valid(t) {
		return nil, errorf(codes.InvalidParams, "plugin %q: the params of %s must be one JSON object or array (JSON-RPC 2.0 params), or none", plugin, method)
	}
	return t, nil
}

// Refusal is one channel a plugin's authorizer refused, as the host keeps
// it.
type Refusal struct {
	Channel string
	Code    int
	Reason  string
}

// Refusals checks a plugin's answer to Authorize: it may refuse only the
// channels it was asked about (a refusal naming another, even another
// plugin's, would reach the client's data.channels as Herald's word). An
// answer that names one is a plugin error, which refuses every channel
// asked (-32603). A refusal's code outside the contract's is -32003; a
// channel refused twice is listed once; a reason is cut (MaxRefusalReason).
func Refusals(plugin string, asked []string, rs []*pluginpb.Refusal) ([]Refusal, *Error) {
	if len(rs) == 0 {
		return nil, nil
	}
	listed := make(map[string]bool, len(asked)) // asked: false; refused: true
	for _, ch := range asked {
		listed[ch] = false
	}
	out := make([]Refusal, 0, len(rs))
	for _, r := range rs {
		ch := r.GetChannel()
		done, ok := listed[ch]
		if !ok {
			if len(ch) > 64 {
				ch = ch[:64] + "..."
			}
			return nil, errorf(codes.Internal, "plugin %q answered a subscription check with a refusal of %q, a channel it was not asked about", plugin, ch)
		}
		if done {
			continue
		}
		listed[ch] = true
		code := int(r.GetCode())
		if !pluginCodes[code] {
			code = codes.Forbidden
		}
		out = append(out, Refusal{Channel: ch, Code: code, Reason: RefusalReason(r.GetReason())})
	}
	return out, nil
}

// MaxRefusalReason bounds a refusal's reason: it is meant for a human and
// is repeated in the client's error message and its data.channels, so a
// plugin must not make one refusal a frame of megabytes.
const MaxRefusalReason = 1024

// RefusalReason is reason cut to MaxRefusalReason bytes (at a rune start,
// so the cut stays UTF-8), marked as cut.
func RefusalReason(reason string) string {
	if len(reason) <= MaxRefusalReason {
		return reason
	}
	cut := MaxRefusalReason
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut] + "... (cut)"
}

// EmitObject checks the object of notification i of a plugin's emit: one
// JSON value (valid answers as encoding/json.Valid does; the host passes a
// faster scanner of its own), in UTF-8, since it is delivered in WebSocket
// text frames. An empty object is the host's "null" and is not given here.
func EmitObject(plugin string, i int, obj []byte, valid func([]byte) bool) *Error {
	if !valid(obj) {
		return errorf(codes.InvalidParams, "plugin %s: notification %d: object is not valid JSON", plugin, i)
	}
	if !utf8.Valid(obj) {
		return errorf(codes.InvalidParams, "plugin %s: notification %d: object is not valid UTF-8 (the first bad byte is at offset %d)", plugin, i, InvalidUTF8At(obj))
	}
	return nil
}

// InvalidUTF8At is the offset of b's first byte that is not part of a
// valid UTF-8 sequence, or len(b).
func InvalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(b)
}

// MaxMethodTimeout caps what a plugin may declare for one method
// (sdk.Method.Timeout): a plugin is code the operator did not write, and a
// call holds one of its connection's limits.max_inflight_calls while it
// runs.
const MaxMethodTimeout = 10 * time.Minute

// MethodTimeout is how long one call of a method may run: the larger of
// the host's own bound (limits.call_timeout) and what the plugin declared
// for the method (declaredMs, its manifest's timeout_ms), at most
// MaxMethodTimeout.
func MethodTimeout(bound time.Duration, declaredMs uint32) time.Duration {
	declared := min(time.Duration(declaredMs)*time.Millisecond, MaxMethodTimeout)
	return max(bound, declared)
}
