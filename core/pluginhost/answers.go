package pluginhost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/heraldhq/herald/core/rpc"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// What a plugin answers reaches clients inside frames the core writes by
// splicing bytes (rpc.AppendResult, rpc.AppendError) and HTTP bodies: a
// plugin is code the operator may not have written, so each answer is
// checked here, once, before anything splices it.

// validJSON reports whether b is exactly one JSON value (surrounding
// whitespace allowed, trailing data not) in UTF-8: what may be spliced
// into a WebSocket text frame as a member's value. json.Valid alone
// accepts invalid UTF-8 inside strings.
func validJSON(b []byte) bool { return utf8.Valid(b) && json.Valid(b) }

// checkResult refuses a call's result that is not exactly one JSON value:
// spliced as it is after `"result":`, anything more would forge members of
// the client's frame (another method, another notification).
func checkResult(plugin, method string, res []byte) *rpc.Error {
	if !utf8.Valid(res) {
		// The answer goes out in a WebSocket text frame, which must be
		// UTF-8: a client would fail its connection on it.
		return rpc.Errorf(rpc.CodeInternal, "plugin %q answered %s with bytes that are not UTF-8", plugin, method)
	}
	if !json.Valid(res) {
		return rpc.Errorf(rpc.CodeInternal, "plugin %q answered %s with a result that is not one valid JSON value", plugin, method)
	}
	return nil
}

// pluginCodes are the codes a plugin's error may carry to a client: those
// of the contract's table (CONTRACT.md section 3) that say something about
// a call. Parse error and invalid request describe the client's frame,
// which the plugin never saw, so they are not among them.
var pluginCodes = map[int]bool{
	rpc.CodeMethodNotFound:    true,
	rpc.CodeInvalidParams:     true,
	rpc.CodeInternal:          true,
	rpc.CodeUnauthenticated:   true,
	rpc.CodeForbidden:         true,
	rpc.CodeUnknownNamespace:  true,
	rpc.CodeLimitExceeded:     true,
	rpc.CodeRateLimited:       true,
	rpc.CodePluginUnavailable: true,
}

// fromPBError turns a plugin's error into the one its caller gets. Clients
// branch on the contract's codes, so a code outside pluginCodes becomes
// -32603, the message kept and the code named in it; an empty message is
// given one naming the plugin. Data that is not one JSON value (it would
// be spliced after `"data":`) is dropped, and the message says so.
func fromPBError(plugin string, e *pluginpb.Error) *rpc.Error {
	out := &rpc.Error{Code: int(e.GetCode()), Message: e.GetMessage()}
	if !pluginCodes[out.Code] {
		if out.Message == "" {
			out.Message = fmt.Sprintf("plugin %q failed with error code %d, which is not one of Herald's", plugin, out.Code)
		} else {
			out.Message = fmt.Sprintf("%s (plugin %q's error code %d is not one of Herald's)", out.Message, plugin, out.Code)
		}
		out.Code = rpc.CodeInternal
	}
	if out.Message == "" {
		out.Message = fmt.Sprintf("plugin %q failed and gave no message", plugin)
	}
	if d := e.GetData(); len(d) > 0 {
		if validJSON(d) {
			out.Data = d
		} else {
			out.Message += fmt.Sprintf(" (plugin %q's error data was not valid JSON and was dropped)", plugin)
		}
	}
	return out
}

// clientParams checks the params of a plugin's call to a client: spliced
// after `"params":` in the request frame, they must be one JSON object or
// array, as JSON-RPC 2.0 wants params. None (empty or null) sends a
// request without params.
func clientParams(plugin, method string, params []byte) ([]byte, *rpc.Error) {
	t := bytes.TrimSpace(params)
	if len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	if !utf8.Valid(t) {
		return nil, rpc.Errorf(rpc.CodeInvalidParams, "plugin %q: the params of %s are not UTF-8; a WebSocket text frame must be", plugin, method)
	}
	if (t[0] != '{' && t[0] != '[') || !json.Valid(t) {
		return nil, rpc.Errorf(rpc.CodeInvalidParams, "plugin %q: the params of %s must be one JSON object or array (JSON-RPC 2.0 params), or none", plugin, method)
	}
	return t, nil
}

// refusals checks a plugin's answer to Authorize: it may refuse only the
// channels it was asked about (a refusal naming another, even another
// plugin's, would reach the client's data.channels as Herald's word). An
// answer that names one is a plugin error, which refuses every channel
// asked (-32603). A refusal's code outside pluginCodes is -32003; a
// channel refused twice is listed once.
func refusals(plugin string, asked []string, rs []*pluginpb.Refusal) ([]Refusal, *rpc.Error) {
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
			return nil, rpc.Errorf(rpc.CodeInternal, "plugin %q answered a subscription check with a refusal of %q, a channel it was not asked about", plugin, ch)
		}
		if done {
			continue
		}
		listed[ch] = true
		code := int(r.GetCode())
		if !pluginCodes[code] {
			code = rpc.CodeForbidden
		}
		out = append(out, Refusal{Channel: ch, Code: code, Reason: refusalReason(r.GetReason())})
	}
	return out, nil
}

// maxRefusalReason bounds a refusal's reason: it is meant for a human and
// is repeated in the client's error message and its data.channels, so a
// plugin must not make one refusal a frame of megabytes.
const maxRefusalReason = 1024

// refusalReason is reason cut to maxRefusalReason bytes (at a rune start,
// so the cut stays UTF-8), marked as cut.
func refusalReason(reason string) string {
	if len(reason) <= maxRefusalReason {
		return reason
	}
	cut := maxRefusalReason
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut] + "... (cut)"
}
