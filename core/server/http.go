package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/core/auth"
	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/sdk/hostcheck"
)

// jsonContentType is the Content-Type header of the publish reply, shared
// by every response: never modify it.
var jsonContentType = []string{"application/json"}

// writeJSON writes v as the JSON body. v is encoded before the status is
// written: should it not encode (a json.RawMessage that is not JSON), the
// reply is a 500 with a JSON error body, never a status with no body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]any{"error": map[string]any{"code": rpc.CodeInternal,
			"message": fmt.Sprintf("herald could not encode its reply: %v", err)}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeJSONError(w http.ResponseWriter, status, code int, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": message}})
}

func writeRPCError(w http.ResponseWriter, status int, e *rpc.Error) {
	body := map[string]any{"code": e.Code, "message": e.Message}
	if len(e.Data) > 0 {
		body["data"] = e.Data
	}
	writeJSON(w, status, map[string]any{"error": body})
}

// requireAPIKey lets through requests with a configured backend key.
func (s *Server) requireAPIKey(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := auth.BearerToken(r)
		if key == "" {
			writeJSONError(w, http.StatusUnauthorized, rpc.CodeUnauthenticated, "missing API key: send Authorization: Bearer <api_key>")
			return
		}
		if !s.apiKeys.Load().Valid(key) {
			writeJSONError(w, http.StatusUnauthorized, rpc.CodeUnauthenticated, "invalid API key")
			return
		}
		next(w, r)
	}
}

// parsePublish validates a publish body and returns its notifications, or
// an error naming the wrong field. The bodies backends send are read in
// one pass (scanPublish); the rest, and every wrong one, are decoded by
// encoding/json (parsePublishJSON), which words the errors.
func parsePublish(body []byte) ([]broker.Notification, error) {
	if ns, ok := scanPublish(body); ok {
		return ns, nil
	}
	return parsePublishJSON(body)
}

// parsePublishJSON is parsePublish with encoding/json: the reference that
// scanPublish must agree with.
func parsePublishJSON(body []byte) ([]broker.Notification, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, fmt.Errorf("body: must be a JSON object (one notification, or {\"notifications\": [...]}), not %s", jsonValueKind(body, err))
	}
	if raw, ok := top["notifications"]; ok {
		for k := range top {
			if k != "notifications" {
				return nil, fmt.Errorf("%s: not a field beside notifications: a body is one notification or {\"notifications\": [...]}, not both", k)
			}
		}
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, errors.New("notifications: must be an array of notifications")
		}
		if len(list) == 0 {
			return nil, errors.New("notifications: must not be empty")
		}
		out := make([]broker.Notification, len(list))
		for i, item := range list {
			n, err := parseNotification(item)
			if fe, ok := err.(*fieldError); ok && fe.field == "notification" {
				return nil, fmt.Errorf("notifications[%d]: %s", i, fe.msg)
			}
			if err != nil {
				return nil, fmt.Errorf("notifications[%d].%w", i, err)
			}
			out[i] = n
		}
		return out, nil
	}
	n, err := parseNotification(body)
	if err != nil {
		return nil, err
	}
	return []broker.Notification{n}, nil
}

// jsonValueKind names what body is instead of an object, for an error
// message: its JSON kind, or that it is not JSON (err).
func jsonValueKind(body []byte, err error) string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		if err == nil {
			err = errors.New("invalid")
		}
		return "invalid JSON (" + strings.TrimPrefix(err.Error(), "json: ") + ")"
	}
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "an object"
}

type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func parseNotification(raw json.RawMessage) (broker.Notification, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return broker.Notification{}, &fieldError{"notification", "must be a JSON object"}
	}
	var n broker.Notification
	str := func(name string, dst *string, required bool) error {
		v, ok := fields[name]
		if !ok || string(v) == "null" {
			if required {
				return &fieldError{name, "is required"}
			}
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return &fieldError{name, "must be a string"}
		}
		if required && *dst == "" {
			return &fieldError{name, "must not be empty"}
		}
		return nil
	}
	for _, f := range []struct {
		name     string
		dst      *string
		required bool
	}{{"channel", &n.Channel, true}, {"event", &n.Event, true}, {"object_type", &n.ObjectType, true}, {"object_name", &n.ObjectName, false}} {
		if err := str(f.name, f.dst, f.required); err != nil {
			return n, err
		}
	}
	if err := validChannel(n.Channel); err != nil {
		return n, &fieldError{"channel", err.Error()}
	}
	if n.Channel == ServerChannel {
		return n, &fieldError{"channel", "$server is herald's own channel"}
	}
	obj, ok := fields["object"]
	if !ok {
		return n, &fieldError{"object", "is required (use null for none)"}
	}
	n.Object = compactJSON(obj)
	for k := range fields {
		switch k {
		case "channel", "event", "object_type", "object_name", "object":
		default:
			return n, &fieldError{k, "is not a notification field (channel, event, object_type, object_name, object)"}
		}
	}
	return n, nil
}

func (s *Server) servePublish(w http.ResponseWriter, r *http.Request) {
	s.publishing.start()
	defer s.publishing.done()
	accepted := time.Now()
	limit := s.live().Limits.MaxPublishBytes
	body, err := readBody(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, limit)
	if err != nil {
		writeBodyError(w, err, limit, s.cfg.Server.ReadTimeout)
		return
	}
	status, reply := s.publishBody(r.Context(), accepted, auth.BearerToken(r), r.Header.Get("Idempotency-Key"), body)
	// What Header().Set writes, without a new slice per request: net/http
	// only reads it.
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(reply)
}

// readBody is io.ReadAll into a buffer of the request's Content-Length
// (when it has one within limit), which ReadAll reaches by growing from
// 512 bytes, copying. r bounds what is read (http.MaxBytesReader).
func readBody(r io.Reader, contentLength, limit int64) ([]byte, error) {
	if contentLength < 0 || contentLength > limit {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, contentLength+1) // +1: room to read EOF without growing
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // a body longer than it said
		}
	}
}

// publishBody answers one backend publish as POST /v1/publish does, for
// the HTTP form and the publishing WebSocket alike (publishws.go): body is
// the request's, scope the API key that sent it (requireAPIKey checked
// it), key its Idempotency-Key ("" for none). It returns the HTTP status
// and the JSON reply, newline-terminated.
func (s *Server) publishBody(ctx context.Context, accepted time.Time, scope, key string, body []byte) (int, []byte) {
	// JSON is UTF-8 (RFC 8259), and so must be a WebSocket text frame: an
	// object with other bytes would make every subscriber's client fail
	// its connection, again on each resume from the history.
	if !utf8.Valid(body) {
		return encodeReply(http.StatusBadRequest, map[string]any{"error": map[string]any{"code": rpc.CodeInvalidParams,
			"message": fmt.Sprintf("body: not valid UTF-8 (the first bad byte is at offset %d); JSON text must be UTF-8", invalidUTF8At(body))}})
	}
	ns, err := parsePublish(body)
	// Once answered, nothing holds ns: the broker copied what it keeps.
	defer releaseNotifications(ns)
	if err == nil {
		err = s.publishable(ns)
	}
	if err != nil {
		return encodeReply(http.StatusBadRequest, map[string]any{"error": map[string]any{"code": rpc.CodeInvalidParams, "message": err.Error()}})
	}
	if len(key) > maxIdempotencyKey {
		return encodeReply(http.StatusBadRequest, map[string]any{"error": map[string]any{"code": rpc.CodeInvalidParams,
			"message": fmt.Sprintf("Idempotency-Key: longer than %d bytes (%d)", maxIdempotencyKey, len(key))}})
	}
	run := func() (int, any) {
		if key != "" {
			// Across nodes, the broker de-duplicates by these (NATS): a
			// retry through another node is answered with the original.
			setMsgIDs(ns, scope, key)
		}
		results, err := s.publishFrom(ctx, sourceHTTP, accepted, ns)
		if errors.Is(err, broker.ErrUnavailable) {
			return http.StatusServiceUnavailable, map[string]any{"error": map[string]any{"code": rpc.CodePluginUnavailable,
				"message": "unavailable: nothing was published; the cluster's message store cannot take it now (" + err.Error() + "); retry later"}}
		}
		if err != nil {
			return http.StatusInternalServerError, map[string]any{"error": map[string]any{"code": rpc.CodeInternal, "message": err.Error()}}
		}
		return http.StatusOK, publishReply(results)
	}
	if key == "" {
		// What idem.do does without a key, without encoding/json.
		return encodePublishReply(run())
	}
	// The key is scoped by the API key that sent it.
	return s.idem.do(scope, key, run)
}

// encodePublishReply is encodeReply, which a successful reply whose
// strings need no escaping skips.
func encodePublishReply(status int, reply any) (int, []byte) {
	if r, ok := reply.(publishReply); ok && r != nil && r.plain() {
		b, _ := r.MarshalJSON()
		return status, append(b, '\n')
	}
	return encodeReply(status, reply)
}

// plain says that no channel or id of r has a byte that encoding/json
// escapes (validChannel allows ", \, <, > and &), so MarshalJSON's bytes
// are what encoding/json would make of them.
func (r publishReply) plain() bool {
	for _, p := range r {
		if !plainJSON(p.Channel) || !plainJSON(p.ID) {
			return false
		}
	}
	return true
}

func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= utf8.RuneSelf, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// publishReply is a publish's answer, {"results":[{channel, seq, id}]},
// written by hand: encoding/json's reflection over a map of structs cost
// more than the rest of the reply. encoding/json still compacts it and
// escapes what it escapes (<, >, & in channel names) when it marshals the
// reply, so the bytes are those it wrote itself.
type publishReply []publishResult

func (r publishReply) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte(`{"results":null}`), nil
	}
	b := make([]byte, 0, 16+len(r)*80)
	b = append(b, `{"results":[`...)
	for i, p := range r {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"channel":`...)
		b = rpc.AppendString(b, p.Channel)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, p.Seq, 10)
		b = append(b, `,"id":`...)
		b = rpc.AppendString(b, p.ID)
		b = append(b, '}')
	}
	return append(b, "]}"...), nil
}

// publishable refuses notifications that no client could ever receive: a
// namespace no plugin owns, open channels when they are disabled, and
// herald's own channels, which only herald writes.
func (s *Server) publishable(ns []broker.Notification) error {
	// The field is named only when one is wrong: formatting it for
	// every notification cost more than the checks.
	field := func(i int) string {
		if len(ns) > 1 {
			return fmt.Sprintf("notifications[%d].channel", i)
		}
		return "channel"
	}
	openChannels := s.live().Auth.OpenChannels
	for i, n := range ns {
		switch ch := n.Channel; {
		case ch == ServerChannel || ch == ConfigChannel:
			return fmt.Errorf("%s: %q is herald's own channel; backends cannot publish to it", field(i), ch)
		case namespace(ch) == "":
			if !openChannels {
				return fmt.Errorf("%s: %q is an open channel and open channels are disabled (auth.open_channels = false)", field(i), ch)
			}
		default:
			if _, ok := s.plugins.Owner(ch); !ok {
				return fmt.Errorf("%s: no plugin owns the namespace %q, so %q can have no subscriber", field(i), namespace(ch), ch)
			}
		}
	}
	return nil
}

type publishResult struct {
	Channel string `json:"channel"`
	Seq     uint64 `json:"seq"`
	ID      string `json:"id"`
}

// publishFrom is publish for a backend's or a plugin's publish accepted at
// accepted: its latency is measured (herald_publish_latency_seconds), and
// so is, from the same time, its delivery.
func (s *Server) publishFrom(ctx context.Context, source string, accepted time.Time, ns []broker.Notification) ([]publishResult, error) {
	for i := range ns {
		ns[i].Accepted = accepted
	}
	res, err := s.publish(ctx, ns)
	if err == nil {
		s.metrics.observePublish(source, accepted)
	}
	return res, err
}

// publish accepts notifications: when it returns, they are in history.
func (s *Server) publish(ctx context.Context, ns []broker.Notification) ([]publishResult, error) {
	if s.brokerClosed.Load() {
		return nil, errors.New("publish: the broker is closed (herald is shutting down)")
	}
	// A client going away must not cut a publish half way.
	pubs, err := s.broker.Publish(context.WithoutCancel(ctx), ns)
	s.metrics.published.Add(float64(len(pubs)))
	results := make([]publishResult, len(pubs))
	for i, p := range pubs {
		results[i] = publishResult{Channel: p.Channel, Seq: p.Seq, ID: p.ID}
	}
	if err != nil {
		return results, fmt.Errorf("publish: %w", err)
	}
	return results, nil
}

func (s *Server) servePluginCall(w http.ResponseWriter, r *http.Request) {
	plugin, method := r.PathValue("plugin"), r.PathValue("method")
	limit := s.live().Limits.MaxPublishBytes
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		writeBodyError(w, err, limit, s.cfg.Server.ReadTimeout)
		return
	}
	// No params, as a WebSocket call's absent or null ones: {}.
	if t := bytes.TrimSpace(body); len(t) == 0 || string(t) == "null" {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		writeJSONError(w, http.StatusBadRequest, rpc.CodeParseError, "body: not valid JSON")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.pluginCallTimeout(plugin, method))
	defer cancel()
	defer context.AfterFunc(s.callsCut, cancel)()
	res, err := s.plugins.Call(ctx, plugin, method, pluginhost.Caller{Backend: true}, body)
	if err != nil && s.callsCut.Err() != nil {
		err = rpc.Errorf(rpc.CodePluginUnavailable, "server is shutting down: the call was cut before %s.%s answered; retry it", plugin, method)
	}
	s.metrics.observeCall(plugin+"."+method, asRPCError(err))
	if err != nil {
		re := asRPCError(err)
		writeRPCError(w, pluginErrorStatus(re), re)
		return
	}
	if len(res) == 0 {
		res = json.RawMessage("null")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res)
}

func asRPCError(err error) *rpc.Error {
	if err == nil {
		return nil
	}
	var re *rpc.Error
	if errors.As(err, &re) {
		return re
	}
	return rpc.Errorf(rpc.CodeInternal, "internal error: %v", err)
}

// pluginErrorStatus is the HTTP status of a plugin method's error: its
// code's (httpStatus), except that an invalid-params error (400) whose data
// names a more precise client error, {"status": 404} as documents' "not
// found" (Kuzzle's own status), answers with it.
func pluginErrorStatus(re *rpc.Error) int {
	status := httpStatus(re.Code)
	if status != http.StatusBadRequest || len(re.Data) == 0 || re.Data[0] != '{' {
		return status
	}
	var d struct {
		Status int `json:"status"`
	}
	if json.Unmarshal(re.Data, &d) == nil && d.Status > 400 && d.Status < 500 &&
		d.Status != http.StatusUnauthorized && d.Status != http.StatusForbidden && d.Status != http.StatusTooManyRequests {
		return d.Status
	}
	return status
}

// httpStatus maps an RPC error code to the HTTP status of the backend API.
func httpStatus(code int) int {
	switch code {
	case rpc.CodeParseError, rpc.CodeInvalidRequest, rpc.CodeInvalidParams:
		return http.StatusBadRequest
	case rpc.CodeUnauthenticated:
		return http.StatusUnauthorized
	case rpc.CodeForbidden:
		return http.StatusForbidden
	case rpc.CodeUnknownNamespace, rpc.CodeMethodNotFound:
		return http.StatusNotFound
	case rpc.CodeLimitExceeded, rpc.CodeRateLimited:
		return http.StatusTooManyRequests
	case rpc.CodePluginUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// invalidUTF8At is the offset of b's first byte that is not part of a
// valid UTF-8 sequence, or len(b).
func invalidUTF8At(b []byte) int { return hostcheck.InvalidUTF8At(b) }

func compactJSON(raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

// methodNotAllowed answers 405 with the methods the path takes.
func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSONError(w, http.StatusMethodNotAllowed, rpc.CodeInvalidRequest, fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, allow))
	}
}

// setMsgIDs gives each notification of an idempotent publish its
// de-duplication id: the API key's scope and the Idempotency-Key, hashed
// (neither is stored as such), and the notification's index.
func setMsgIDs(ns []broker.Notification, scope, key string) {
	sum := sha256.Sum256([]byte(scope + "\x00" + key))
	base := hex.EncodeToString(sum[:16])
	for i := range ns {
		ns[i].MsgID = base + "." + strconv.Itoa(i)
	}
}
