package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/core/auth"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/core/transport"
)

// serveProtocols are the listener's protocols: HTTP/1.1 (WebSocket
// upgrades need it) and unencrypted HTTP/2 with prior knowledge (h2c), so
// that a backend can send its API requests over one multiplexed
// connection. Over TLS only HTTP/1.1 is offered (tls.go).
func serveProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// serveHTTP2 bounds an h2c connection's concurrent requests (streams) by
// limits.max_inflight_calls, as the listener is opened: the same bound as
// a WebSocket's calls running at once.
func (s *Server) serveHTTP2() *http.HTTP2Config {
	return &http.HTTP2Config{MaxConcurrentStreams: s.cfg.Limits.MaxInflightCalls}
}

// The publishing WebSocket (GET /v1/publish/ws) is POST /v1/publish over
// one persistent connection: a backend authenticates once, at the
// upgrade, with its API key, then sends JSON-RPC requests `publish` whose
// params are the POST body (plus an optional idempotency_key, the
// Idempotency-Key header's twin). Each is answered with the HTTP form's
// reply as its result, or with the HTTP form's error as its error, so the
// two forms share one path (publishBody), one idempotency table and the
// same cluster de-duplication ids.
//
// Requests are pipelined: the reader hands each frame (a request or a
// JSON-RPC batch) to a goroutine of its own and reads on, up to
// limits.max_inflight_calls frames running at once; past that it stops
// reading until one ends, so a backend that sends faster than herald
// publishes is slowed by TCP, not refused. Replies go out in the order the
// publishes end, each with its id. A batch's entries are published one
// after another, in order, and answered together. Replies queue in the
// connection's outbox under the delivery bounds: a backend that does not
// read them is closed as a slow consumer (4008); a frame over
// limits.max_publish_bytes closes it with 1009, once the frames read
// before it are answered (nothing more is read meanwhile). Nothing a backend does
// here holds anything another connection needs.

// publishers are the open publishing connections, for Shutdown and the
// heartbeat.
type publishers struct {
	mu    sync.Mutex
	conns map[*publisherConn]struct{}
}

// publisherConn is one backend's publishing connection.
type publisherConn struct {
	srv   *Server
	conn  *transport.Conn
	scope string // the API key: idempotency keys are scoped by it
	// slots bounds the frames being handled (limits.max_inflight_calls,
	// as it was when the connection opened); goAway fills it to wait for
	// them.
	slots   chan struct{}
	jobs    chan publishJob // to the workers; closed when the reader ends
	workers int             // started; only the reader touches it
	running sync.WaitGroup  // the workers; only the reader adds
	// handling counts the frames taken and not answered yet; only the
	// reader adds. The 1009 close of a frame over max_publish_bytes waits
	// for them (transport.Conn.BeforeTooBig): their publishes happened,
	// and the backend learns so before the close.
	handling sync.WaitGroup
	mu       sync.Mutex
	draining bool // set by goAway: new requests are refused
	// stop is closed by goAway: a reader waiting for a slot stops
	// waiting (it would otherwise never read the peer's close reply).
	stop chan struct{}
}

func (s *Server) servePublishWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSONError(w, http.StatusServiceUnavailable, rpc.CodeInternal, "server is shutting down")
		return
	}
	// A browser cannot send an Authorization header with a WebSocket
	// handshake, so a page of another origin cannot open this connection
	// with a backend's key: the origin check of /ws has nothing to guard
	// here, and backends' WebSocket libraries may send any Origin.
	up := s.upgrader
	up.CheckOrigin = func(*http.Request) bool { return true }
	conn, err := transport.Upgrade(&up, w, r, s.connOpts.Load())
	if err != nil {
		return // the upgrader answered already
	}
	lim := s.live().Limits
	conn.SetReadLimit(lim.MaxPublishBytes, "limits.max_publish_bytes")
	pc := &publisherConn{srv: s, conn: conn, scope: auth.BearerToken(r), slots: make(chan struct{}, lim.MaxInflightCalls), stop: make(chan struct{}), jobs: make(chan publishJob)}
	if !s.pubConns.add(s, pc) {
		// Accepted while Shutdown was closing the others.
		conn.Close(transport.CloseGoingAway, "server shutdown")
		_ = conn.ReadLoop(func([]byte) {})
		return
	}
	conn.BeforeTooBig(pc.handling.Wait)
	// A reader goroutine of its own (ReadLoop), not Serve: a backend's
	// publishing connection is busy, not idle, and reading it on readiness
	// would cost a wake-up and a re-arm per burst of frames for memory it
	// does not need (c-ws: ~10 % more server CPU; docs/performance.md).
	go func() {
		defer s.conns.Done()
		_ = conn.ReadLoop(pc.handleFrame)
		close(pc.jobs)
		pc.running.Wait()
		s.pubConns.remove(pc)
	}()
}

// add registers pc unless the server is draining; then Shutdown will wait
// for it (s.conns).
func (ps *publishers) add(s *Server, pc *publisherConn) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	// Shutdown sets draining before it lists the connections (goAway):
	// a connection added after the listing sees it.
	if s.draining.Load() {
		return false
	}
	if ps.conns == nil {
		ps.conns = make(map[*publisherConn]struct{})
	}
	ps.conns[pc] = struct{}{}
	s.conns.Add(1)
	return true
}

func (ps *publishers) remove(pc *publisherConn) {
	ps.mu.Lock()
	delete(ps.conns, pc)
	ps.mu.Unlock()
}

func (ps *publishers) list() []*publisherConn {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	all := make([]*publisherConn, 0, len(ps.conns))
	for pc := range ps.conns {
		all = append(all, pc)
	}
	return all
}

// goAway closes every publishing connection with 1001 once its running
// publishes are answered; requests read meanwhile are refused with -32050
// (nothing published, retry on another node). It returns at once:
// Shutdown waits for the connections through s.conns.
func (ps *publishers) goAway() {
	for _, pc := range ps.list() {
		go pc.goAway()
	}
}

// heartbeat pings silent publishing connections as the server's
// heartbeat does client connections, and closes those that do not answer.
func (ps *publishers) heartbeat(interval time.Duration) {
	for _, pc := range ps.list() {
		pc.conn.Heartbeat(interval)
	}
}

func (pc *publisherConn) goAway() {
	pc.mu.Lock()
	pc.draining = true
	pc.mu.Unlock()
	close(pc.stop)
	// Holding every slot, nothing runs and nothing can start.
	for range cap(pc.slots) {
		select {
		case pc.slots <- struct{}{}:
		case <-pc.conn.Done():
			return
		}
	}
	pc.conn.Close(transport.CloseGoingAway, "server shutdown")
}

// isDraining: a request read from now on is refused, from the moment the
// server starts draining (not only once goAway reaches this connection).
func (pc *publisherConn) isDraining() bool {
	if pc.srv.draining.Load() {
		return true
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.draining
}

// handleFrame takes a slot, waiting for one while max_inflight_calls
// frames are running, and hands a copy of the frame to a worker.
//
// Workers live as long as the connection, at most one per slot, so that
// their stacks, grown by JSON decoding, are grown once and not per frame;
// the reader's goroutine (transport.Conn.ReadLoop) does no more than copy
// the frame and stays small.
func (pc *publisherConn) handleFrame(frame []byte) {
	j := publishJob{accepted: time.Now(), frame: bytes.Clone(frame)} // nil stays nil
	select {
	case pc.slots <- struct{}{}:
	case <-pc.stop:
		pc.answer(j) // refused: the connection drains
		return
	case <-pc.conn.Done():
		return
	}
	pc.handling.Add(1)
	select {
	case pc.jobs <- j:
		return
	default:
	}
	if pc.workers < cap(pc.slots) {
		pc.workers++
		pc.running.Add(1)
		go pc.work(j)
		return
	}
	// Every worker exists and one is about to take it: the slot it
	// released is the one just taken.
	pc.jobs <- j
}

// publishJob is a frame read, with when it was.
type publishJob struct {
	accepted time.Time
	frame    []byte // nil for a binary frame
}

// work answers frames until the reader ends (closeJobs).
func (pc *publisherConn) work(j publishJob) {
	defer pc.running.Done()
	for {
		pc.answer(j)
		pc.handling.Done()
		<-pc.slots
		var ok bool
		if j, ok = <-pc.jobs; !ok {
			return
		}
	}
}

// answer runs a frame's requests, in order, and sends its reply.
func (pc *publisherConn) answer(j publishJob) {
	accepted := j.accepted
	if j.frame == nil {
		pc.conn.Send(rpc.AppendError(nil, nil, rpc.Errorf(rpc.CodeParseError, "parse error: binary frames are not supported; send JSON-RPC as text frames")))
		return
	}
	if !utf8.Valid(j.frame) { // as on /ws (session.handleFrame)
		pc.conn.Close(transport.CloseInvalidText, "invalid UTF-8 in a text frame: send JSON-RPC as UTF-8 text")
		return
	}
	msgs, batch := rpc.DecodeMax(j.frame, pc.srv.live().Limits.MaxBatchCalls)
	if !batch {
		if reply := pc.request(accepted, &msgs[0]); reply != nil {
			pc.conn.Send(reply)
		}
		return
	}
	var out []byte
	for i := range msgs {
		reply := pc.request(accepted, &msgs[i])
		if reply == nil {
			continue
		}
		if out == nil {
			out = append(out, '[')
		} else {
			out = append(out, ',')
		}
		out = append(out, reply...)
	}
	if out != nil {
		pc.conn.Send(append(out, ']'))
	}
}

// request answers one message: nil for a notification (a publish without
// id is published and not answered) and for responses (herald calls
// nothing on a backend).
func (pc *publisherConn) request(accepted time.Time, m *rpc.Message) []byte {
	var reply []byte
	switch {
	case m.Kind == rpc.KindInvalid:
		return rpc.AppendError(nil, m.ID, m.Err)
	case m.Kind == rpc.KindResponse:
		return nil
	case m.Method == "ping":
		reply = rpc.AppendResult(nil, m.ID, []byte(`"pong"`))
	case m.Method != "publish":
		reply = rpc.AppendError(nil, m.ID, rpc.Errorf(rpc.CodeMethodNotFound, "method not found: %q; this connection takes publish and ping", m.Method))
	case pc.isDraining():
		reply = rpc.AppendError(nil, m.ID, rpc.Errorf(rpc.CodePluginUnavailable, "unavailable: herald is shutting down; nothing was published; retry on another node or after the restart"))
	default:
		reply = pc.publish(accepted, m)
	}
	if m.Kind == rpc.KindNotification {
		return nil
	}
	return reply
}

// publish runs one publish request through the HTTP form's path and turns
// its answer into a JSON-RPC reply: the HTTP reply as the result, or its
// error object as the error.
func (pc *publisherConn) publish(accepted time.Time, m *rpc.Message) []byte {
	body, key, rerr := publishParams(m.Params)
	if rerr != nil {
		return rpc.AppendError(nil, m.ID, rerr)
	}
	status, reply := pc.srv.publishBody(context.Background(), accepted, pc.scope, key, body)
	reply = bytes.TrimRight(reply, "\n")
	if status == http.StatusOK {
		return rpc.AppendResult(nil, m.ID, reply)
	}
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(reply, &e) != nil || len(e.Error) == 0 {
		return rpc.AppendError(nil, m.ID, rpc.Errorf(rpc.CodeInternal, "internal error: publish answered %d", status))
	}
	out := append([]byte(`{"jsonrpc":"2.0","id":`), idOrNull(m.ID)...)
	out = append(out, `,"error":`...)
	out = append(out, e.Error...)
	return append(out, '}')
}

func idOrNull(id json.RawMessage) json.RawMessage {
	if id == nil {
		return json.RawMessage("null")
	}
	return id
}

// publishParams splits a publish request's params into the POST body and
// the idempotency key. Params without the key's name are the body as they
// are (the common case costs no second decoding).
func publishParams(params json.RawMessage) (body []byte, key string, err *rpc.Error) {
	if len(params) == 0 || string(params) == "null" {
		return nil, "", rpc.Errorf(rpc.CodeInvalidParams, "params: required; they are the body of POST /v1/publish: one notification or {\"notifications\": [...]}, with an optional idempotency_key")
	}
	// A key may be spelled with escapes ("\u0069dempotency_key"): any
	// escape takes the careful path.
	if !bytes.Contains(params, []byte("idempotency_key")) && !bytes.Contains(params, []byte(`\u`)) {
		return params, "", nil
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(params, &top) != nil || top == nil {
		return params, "", nil // publishBody names what is wrong
	}
	raw, ok := top["idempotency_key"]
	if !ok {
		return params, "", nil
	}
	if string(raw) != "null" {
		if json.Unmarshal(raw, &key) != nil {
			return nil, "", rpc.Errorf(rpc.CodeInvalidParams, "idempotency_key: must be a string")
		}
		if len(key) > maxIdempotencyKey {
			return nil, "", rpc.Errorf(rpc.CodeInvalidParams, "idempotency_key: longer than %d bytes (%d)", maxIdempotencyKey, len(key))
		}
	}
	delete(top, "idempotency_key")
	// Rebuilt by hand: json.Marshal would HTML-escape the objects, and
	// subscribers would get other bytes than the HTTP form gives them.
	body = append(make([]byte, 0, len(params)), '{')
	for k, v := range top {
		if len(body) > 1 {
			body = append(body, ',')
		}
		body = rpc.AppendString(body, k)
		body = append(body, ':')
		body = append(body, v...)
	}
	return append(body, '}'), key, nil
}
