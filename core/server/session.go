package server

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/core/auth"
	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/core/transport"
	"github.com/heraldhq/herald/sdk/hostcheck"
)

// session is one client connection's protocol state. Frames are handled one
// at a time by the connection's reader goroutine; timers and plugin calls
// reach it from other goroutines, hence the mutex.
type session struct {
	srv  *Server
	conn *transport.Conn
	id   string

	// wantsNotifications is false when hello's methods omit
	// onNotificationReceived: such a client receives no batches.
	wantsNotifications atomic.Bool
	inFlight           atomic.Int32 // plugin calls running (beside the Bool: no padding)
	// uid is read by the hub on every subscribe; it is set once, when the
	// connection is first identified.
	uid atomic.Pointer[string]

	// afterReply runs once the current frame's reply is queued; only the
	// reader goroutine touches it.
	afterReply []func()
	// replying counts the replies that goroutines will send (plugin
	// calls under way); only the reader goroutine adds. The 1009 close of
	// a frame over max_frame_bytes waits for them
	// (transport.Conn.BeforeTooBig), so that a call that took effect is
	// answered before the close.
	replying sync.WaitGroup

	// greeted: the connection's first hello came (admit).
	greeted atomic.Bool

	mu sync.Mutex
	// callsPerSecond is limits.calls_per_second when the connection opened;
	// budget is its budget, preAuth the smaller one of a connection that
	// has not authenticated yet (see unauthenticated.go), which applies on
	// top of budget until then.
	callsPerSecond  float64
	budget, preAuth callBudget
	ident           *auth.Identity // nil until a token is accepted
	methods         map[string]bool
	volatile        json.RawMessage
	subs            chanSet
	timer           *time.Timer // token expiry, then grace
	// serverSeq numbers the $server notifications of this connection.
	serverSeq uint64
	calls     map[string]chan *rpc.Message
	nextCall  uint64
	closed    bool
	// announced is set once plugins were told of the connection.
	announced bool
	expired   bool // the token expired and no new one came yet
}

// noUserID is the user id of a session not identified yet: one string for
// all of them.
var noUserID = ""

func newSession(srv *Server, conn *transport.Conn, id string) *session {
	s := &session{
		srv:            srv,
		conn:           conn,
		id:             id,
		callsPerSecond: srv.live().Limits.CallsPerSecond,
	}
	s.wantsNotifications.Store(true)
	s.uid.Store(&noUserID)
	return s
}

// Deliver implements hub.Subscriber.
func (s *session) Deliver(p *broker.Publication) {
	if s.wantsNotifications.Load() {
		s.conn.Deliver(p)
		s.srv.metrics.delivered.Inc()
	}
}

// DeliverMissed implements hub.MissedDeliverer.
func (s *session) DeliverMissed(p *broker.Publication) {
	if s.wantsNotifications.Load() {
		s.conn.DeliverMissed(p)
		s.srv.metrics.delivered.Inc()
	}
}

// Room implements hub.Pager: a resume is delivered as the outbox drains.
func (s *session) Room() int {
	if !s.wantsNotifications.Load() {
		return math.MaxInt32 // nothing is queued for it
	}
	return s.conn.Room()
}

// WhenDrained implements hub.Pager.
func (s *session) WhenDrained(f func()) { s.conn.WhenDrained(f) }

// Resync implements hub.Resyncer: the $server resync notification of
// CONTRACT.md section 3, for a stream with a gap that cannot be filled.
func (s *session) Resync(channel string, pos broker.Position) {
	obj, err := json.Marshal(map[string]any{"channels": []map[string]any{{"channel": channel, "seq": pos.Seq, "epoch": pos.Epoch}}})
	if err != nil {
		return
	}
	s.srv.log.Debug("resync", "conn", s.id, "channel", channel, "seq", pos.Seq, "epoch", pos.Epoch)
	s.sendServer("resync", "server", obj)
}

// UserID implements hub.Subscriber.
func (s *session) UserID() string { return *s.uid.Load() }

// authenticated reports whether the session may use the protocol: it has a
// live token, or anonymous access is on.
func (s *session) authenticated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authenticatedLocked()
}

// identified reports whether the session ever had a token accepted (or
// needs none): auth.auth_timeout closes only connections that never sent
// one, not those whose token expired since (their subscriptions may outlive
// it, see KeptOnExpiry).
func (s *session) identified() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identifiedLocked()
}

func (s *session) identifiedLocked() bool { return s.ident != nil || s.srv.cfg.Auth.Anonymous }

func (s *session) authenticatedLocked() bool {
	return (s.ident != nil && !s.expired) || s.srv.cfg.Auth.Anonymous
}

func (s *session) caller() pluginhost.Caller {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := pluginhost.Caller{ConnID: s.id}
	if s.ident != nil && !s.expired {
		c.UserID, c.Claims, c.Token = s.ident.UserID, s.ident.Claims, s.ident.Token
	}
	return c
}

// eventUser is who a lifecycle event for the plugins names: the
// connection's user and the claims of its last token, even after that token
// expired (the user id of a connection never changes, and a plugin must
// learn that this user's connection or subscription ended).
func (s *session) eventUser() (string, json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ident == nil {
		return "", nil
	}
	return s.ident.UserID, s.ident.Claims
}

// setIdentity installs a verified token: it arms the expiry timer and, on
// the first identification, fixes the connection's user id.
func (s *session) setIdentity(id *auth.Identity) *rpc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ident != nil && s.ident.UserID != id.UserID {
		return rpc.Errorf(rpc.CodeForbidden, "this token is for user %q but the connection belongs to %q: open a new connection to switch users", id.UserID, s.ident.UserID)
	}
	if s.ident == nil && s.subs.len() > 0 {
		// An anonymous connection that signs in keeps its presence entries
		// under "": switching would corrupt the counts.
		return rpc.Errorf(rpc.CodeForbidden, "authenticate before subscribing: this connection already has anonymous subscriptions")
	}
	if s.ident == nil {
		uid := id.UserID
		s.uid.Store(&uid)
		s.conn.SetOutboxBytes(s.srv.live().Delivery.OutboxBytes)
	}
	s.ident = id
	s.expired = false
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if !id.ExpiresAt.IsZero() {
		s.timer = time.AfterFunc(time.Until(id.ExpiresAt), s.tokenExpired)
	}
	return nil
}

// tokenExpired tells the client once, then waits expiry_grace for a new token.
func (s *session) tokenExpired() {
	s.mu.Lock()
	if s.closed || s.ident == nil || time.Now().Before(s.ident.ExpiresAt) {
		s.mu.Unlock()
		return
	}
	s.expired = true
	s.timer = time.AfterFunc(s.srv.live().Auth.ExpiryGrace, s.graceOver)
	s.mu.Unlock()
	s.sendServer("token_expired", "server", []byte(`{"message":"Authentication Token Expired"}`))
}

// graceOver drops the connection's private subscriptions (CONTRACT.md
// section 3): those to channels of a plugin's namespace ("prefix:rest"),
// except the prefixes whose plugin checks the token at subscribe time only
// (KeptOnExpiry). Open channels and config are not private: they stay.
func (s *session) graceOver() {
	s.mu.Lock()
	if s.closed || !s.expired {
		s.mu.Unlock()
		return
	}
	var drop []string
	for ch := range s.subs.all() {
		if private(ch) && !s.srv.plugins.KeptOnExpiry(ch) {
			drop = append(drop, ch)
		}
	}
	s.mu.Unlock()
	s.drop(drop, "the token expired and no new one came within auth.expiry_grace")
}

// drop ends subscriptions that the client did not ask to end and tells it
// with one $server unsubscribed listing the channels it had among them,
// each with reason (CONTRACT.md section 3). The notification is queued
// after everything the hub queued for those channels, and nothing of them
// follows it: hub.Unsubscribe returns only once no delivery of the channel
// to this connection is under way, and takes it out of every later one
// (live, buffered or paged). A connection that is closing is not told (end
// unsubscribes it silently), nor is one whose client asked
// (unsubscribeCall answers it).
func (s *session) drop(channels []string, reason string) {
	done := s.unsubscribe(channels)
	if len(done) == 0 {
		return
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	type ended struct {
		Channel string `json:"channel"`
		Reason  string `json:"reason"`
	}
	list := make([]ended, len(done))
	for i, ch := range done {
		list[i] = ended{ch, reason}
	}
	obj, err := json.Marshal(map[string]any{"channels": list})
	if err != nil {
		s.srv.log.Error("encoding a $server unsubscribed notification", "conn", s.id, "error", err)
		return
	}
	s.srv.log.Debug("subscriptions dropped", "conn", s.id, "channels", done, "reason", reason)
	s.sendServer("unsubscribed", "server", obj)
}

// private reports whether channel is a plugin's (of a namespace a plugin
// owns), whose subscription depends on the connection's token.
func private(channel string) bool { return namespace(channel) != "" }

// sendServer sends a $server notification, outside any subscription.
func (s *session) sendServer(event, objectType string, object []byte) {
	if !s.wantsNotifications.Load() {
		return
	}
	s.mu.Lock()
	s.serverSeq++
	seq := s.serverSeq
	s.mu.Unlock()
	n := broker.Notification{Channel: ServerChannel, Event: event, ObjectType: objectType, Object: object}
	data := broker.Encode(nil, &n, newID(), seq, time.Now().UnixMilli())
	s.conn.Deliver(&broker.Publication{Channel: ServerChannel, Seq: seq, Data: data})
}

// handleFrame answers one frame: a message or a batch of them. herald's own
// methods run here, in order; plugin calls run on goroutines of their own,
// because a plugin may call back into this connection's local interface and
// its answer arrives through this very reader.
func (s *session) handleFrame(frame []byte) {
	if frame == nil {
		err := s.rateLimit() // its error reply costs what an invalid entry's does
		if err == nil {
			err = rpc.Errorf(rpc.CodeParseError, "parse error: binary frames are not supported; send JSON-RPC as text frames")
		}
		s.conn.Send(rpc.AppendError(nil, nil, err))
		return
	}
	if !utf8.Valid(frame) {
		// RFC 6455 section 8.1: a text frame that is not UTF-8 fails the
		// connection. Answering it instead would echo its bytes (an id)
		// in a text frame that the client's side must refuse in turn.
		s.conn.Close(transport.CloseInvalidText, "invalid UTF-8 in a text frame: send JSON-RPC as UTF-8 text")
		return
	}
	maxBatch := s.maxBatchCalls()
	msgs, batch := rpc.DecodeMax(frame, maxBatch)
	if e := msgs[0].Err; !batch && e != nil && e.Code == rpc.CodeLimitExceeded && !s.identified() {
		// The codec names the configured key; before authentication the
		// bound is a tenth of it, and authenticating is the way out.
		msgs[0].Err = rpc.Errorf(rpc.CodeLimitExceeded, "limit exceeded: before the connection authenticates a batch may hold at most %d calls (limits.max_batch_calls / 10); authenticate (hello or authenticate with a token) or split it", maxBatch)
	}
	if !batch {
		reply, wait := s.handleMessage(&msgs[0])
		switch {
		case wait != nil:
			s.replying.Add(1)
			go func() {
				defer s.replying.Done()
				r, after := wait()
				if r != nil {
					s.conn.Send(r)
				}
				after()
			}()
		case reply != nil:
			s.conn.Send(reply)
		}
		s.runAfterReply()
		return
	}
	replies := make([][]byte, len(msgs))
	waits := make([]func() ([]byte, func()), len(msgs))
	pending := false
	for i := range msgs {
		replies[i], waits[i] = s.handleMessage(&msgs[i])
		pending = pending || waits[i] != nil
	}
	after := s.afterReply
	s.afterReply = nil
	send := func() {
		var out []byte
		for i := range replies {
			if waits[i] != nil {
				var a func()
				replies[i], a = waits[i]()
				after = append(after, a)
			}
			if replies[i] == nil {
				continue
			}
			if out == nil {
				out = append(out, '[')
			} else {
				out = append(out, ',')
			}
			out = append(out, replies[i]...)
		}
		if out != nil {
			s.conn.Send(append(out, ']'))
		}
		for _, f := range after {
			f()
		}
	}
	if pending {
		s.replying.Add(1)
		go func() {
			defer s.replying.Done()
			send()
		}()
		return
	}
	send()
}

// runAfterReply runs and forgets what the frame left to run: the funcs
// (subscribe's holds its hub.Joins) must not stay reachable from the
// session's slice for the life of an idle connection.
func (s *session) runAfterReply() {
	for _, f := range s.afterReply {
		f()
	}
	s.afterReply = nil
}

// handleMessage returns the reply to send (nil for notifications and
// responses), or, for a plugin call, a function that waits for it and
// returns what to run once it was sent (held subscriptions: held.go).
func (s *session) handleMessage(m *rpc.Message) ([]byte, func() ([]byte, func())) {
	switch m.Kind {
	case rpc.KindInvalid:
		if m.Answers != nil {
			// A malformed answer to one of our calls: the call fails now
			// with what was wrong, rather than at its timeout.
			s.resolveCall(&rpc.Message{Kind: rpc.KindResponse, ID: m.Answers,
				Error: rpc.Errorf(rpc.CodeInternal, "the client's answer is not a valid JSON-RPC response: %s", m.Err.Message)})
		}
		// Invalid entries cost a reply each: they count against the rate
		// limit like calls, so a batch of them cannot outrun it.
		if err := s.rateLimit(); err != nil {
			return rpc.AppendError(nil, m.ID, err), nil
		}
		return rpc.AppendError(nil, m.ID, m.Err), nil
	case rpc.KindResponse:
		s.resolveCall(m)
		return nil, nil
	}
	finish := func(result []byte, err *rpc.Error) []byte {
		s.srv.metrics.observeCall(m.Method, err)
		if m.Kind == rpc.KindNotification {
			return nil
		}
		if err != nil {
			return rpc.AppendError(nil, m.ID, err)
		}
		return rpc.AppendResult(nil, m.ID, result)
	}
	if err := s.admit(m.Method); err != nil {
		return finish(nil, err), nil
	}
	if isCoreMethod(m.Method) {
		result, err := s.coreCall(m.Method, m.Params)
		return finish(result, err), nil
	}
	if plugin, _, ok := strings.Cut(m.Method, "."); !ok || plugin == "" || !s.srv.plugins.Loaded(plugin) {
		// No plugin to ask: answered at once, without an in-flight slot
		// (pipelined calls to a plugin that does not exist are -32004,
		// not -32005).
		_, err := s.pluginCallWith(m.Method, m.Params, func(_ context.Context, plugin, _ string, _ pluginhost.Caller, _ json.RawMessage) (json.RawMessage, error) {
			return nil, rpc.Errorf(rpc.CodeUnknownNamespace, "unknown plugin %q", plugin)
		})
		return finish(nil, err), nil
	}
	if limit := s.srv.live().Limits.MaxInflightCalls; s.inFlight.Add(1) > int32(limit) {
		s.inFlight.Add(-1)
		return finish(nil, rpc.Errorf(rpc.CodeLimitExceeded, "limit exceeded: %d plugin calls are already running on this connection (limits.max_inflight_calls); wait for their replies", limit)), nil
	}
	done := make(chan []byte, 1)
	var holds []string // written before done is sent
	go func() {
		defer s.inFlight.Add(-1)
		var result []byte
		var err *rpc.Error
		result, holds, err = s.pluginCallHeld(m.Method, m.Params)
		done <- finish(result, err)
	}()
	return nil, func() ([]byte, func()) {
		r := <-done
		return r, func() { s.srv.ReleaseHolds(s.id, holds) }
	}
}

func isCoreMethod(method string) bool { return coreMethods[method] }

// admit applies the rate limit and the authentication requirement. The
// connection's first hello is its handshake and costs nothing: with
// calls_per_second at 1, a client's hello would otherwise spend the budget
// its first subscribe (or, after a reconnect, its re-subscribe) needs.
func (s *session) admit(method string) *rpc.Error {
	if !(method == "hello" && s.greeted.CompareAndSwap(false, true)) {
		if err := s.rateLimit(); err != nil {
			return err
		}
	}
	switch method {
	case "hello", "authenticate", "ping":
		return nil
	case "subscribe", "unsubscribe":
		// subscribe may bring its own token (Speakap's accessToken) and
		// checks authentication itself; unsubscribe only ends what the
		// connection holds, which subscriptions kept across token expiry
		// must allow.
		return nil
	}
	if !s.authenticated() {
		if s.identified() {
			return rpc.Errorf(rpc.CodeUnauthenticated, "token expired: authenticate with a new token to call again")
		}
		return rpc.Errorf(rpc.CodeUnauthenticated, "authentication required: send hello or authenticate with a valid token first")
	}
	return nil
}

// coreCall runs one of herald's own methods.
func (s *session) coreCall(method string, params json.RawMessage) ([]byte, *rpc.Error) {
	switch method {
	case "hello":
		return s.hello(params)
	case "authenticate":
		return s.authenticate(params)
	case "ping":
		return []byte(`"pong"`), nil
	case "subscribe":
		return s.subscribe(params)
	case "unsubscribe":
		return s.unsubscribeCall(params)
	case "presence":
		return s.presence(params)
	}
	return nil, rpc.Errorf(rpc.CodeMethodNotFound, "method not found: %q", method)
}

// serverCall calls a method of the client's local interface and waits for
// its answer, until clientCallMargin before ctx's deadline (or
// limits.call_timeout from now, whichever comes first): the plugin call
// that made it, bounded by the same limits.call_timeout, then still has the
// time to learn that it was the client that did not answer, and say so.
func (s *session) serverCall(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	if e := hostcheck.ClientMethod(method); e != nil {
		// CONTRACT.md section 3: a notification, which only Herald sends.
		return nil, &rpc.Error{Code: e.Code, Message: e.Message}
	}
	deadline := time.Now().Add(s.srv.callTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	deadline = deadline.Add(-clientCallMargin(s.srv.callTimeout))
	if !time.Now().Before(deadline) {
		return nil, rpc.Errorf(rpc.CodeInternal, "no time left to call %q on the client: the plugin call that asks for it is about to time out (limits.call_timeout)", method)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, rpc.Errorf(rpc.CodeInternal, "connection %s is closed", s.id)
	}
	if !s.presents(method) {
		s.mu.Unlock()
		return nil, rpc.Errorf(rpc.CodeMethodNotFound, "the client does not present %q in its local interface", method)
	}
	// The client's bounds, turned around: no more calls waiting on it than
	// it may have waiting on herald, and no frame larger than it may send.
	lim := s.srv.live().Limits
	if len(s.calls) >= lim.MaxInflightCalls {
		s.mu.Unlock()
		return nil, rpc.Errorf(rpc.CodeLimitExceeded, "limit exceeded: %d calls already wait for this client's answers (limits.max_inflight_calls)", len(s.calls))
	}
	if size := int64(len(params) + len(method) + 64); size > lim.MaxFrameBytes {
		s.mu.Unlock()
		return nil, rpc.Errorf(rpc.CodeLimitExceeded, "limit exceeded: a call of %q with %d bytes of params would be a frame larger than limits.max_frame_bytes (%d)", method, len(params), lim.MaxFrameBytes)
	}
	s.nextCall++
	id := "s" + strconv.FormatUint(s.nextCall, 10)
	ch := make(chan *rpc.Message, 1)
	if s.calls == nil {
		s.calls = make(map[string]chan *rpc.Message)
	}
	s.calls[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.calls, id)
		s.mu.Unlock()
	}()

	s.conn.Send(rpc.AppendRequest(nil, id, method, params))
	select {
	case m := <-ch:
		if m.Error != nil {
			return nil, m.Error
		}
		return m.Result, nil
	case <-ctx.Done():
		return nil, rpc.Errorf(rpc.CodeInternal, "the client did not answer %q in time", method)
	case <-s.conn.Done():
		return nil, rpc.Errorf(rpc.CodeInternal, "connection %s closed before answering %q", s.id, method)
	}
}

// clientCallMargin is how much sooner than its caller's deadline a
// server-to-client call gives up: a fifth of limits.call_timeout, at most a
// second.
func clientCallMargin(callTimeout time.Duration) time.Duration {
	return min(callTimeout/5, time.Second)
}

// presents reports whether the client's local interface has method. A
// client that never said hello presents onNotificationReceived only.
func (s *session) presents(method string) bool {
	if s.methods == nil {
		return method == "onNotificationReceived"
	}
	return s.methods[method]
}

func (s *session) resolveCall(m *rpc.Message) {
	var id string
	if json.Unmarshal(m.ID, &id) != nil {
		return
	}
	s.mu.Lock()
	ch := s.calls[id]
	s.mu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default:
		}
	}
}

// end releases everything the connection held.
func (s *session) end() {
	s.mu.Lock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	channels := make([]string, 0, s.subs.len())
	for ch := range s.subs.all() {
		channels = append(channels, ch)
	}
	s.mu.Unlock()
	s.unsubscribe(channels)
	s.mu.Lock()
	announced := s.announced
	s.mu.Unlock()
	if announced {
		uid, claims := s.eventUser()
		s.srv.plugins.Notify(pluginhost.Event{Kind: pluginhost.Disconnected, ConnID: s.id, UserID: uid, Claims: claims})
	}
}

// announce tells the plugins of the connection once it is identified (or,
// anonymous, once it said hello or subscribed).
func (s *session) announce() {
	s.mu.Lock()
	if s.announced || s.closed {
		s.mu.Unlock()
		return
	}
	s.announced = true
	ev := pluginhost.Event{Kind: pluginhost.Connected, ConnID: s.id, Volatile: s.volatile}
	if s.ident != nil {
		ev.UserID, ev.Claims = s.ident.UserID, s.ident.Claims
	}
	s.mu.Unlock()
	s.srv.plugins.Notify(ev)
}
