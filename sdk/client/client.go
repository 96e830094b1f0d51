package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("herald: client closed")

// State is the connection's state, as Options.OnState reports it.
type State int

const (
	Connecting   State = iota // the first connection is being made
	Connected                 // hello done, every channel (re)subscribed or waiting for its plugin
	Reconnecting              // the connection was lost; waiting to retry
	Closed                    // Close was called, or the first connection failed
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Reconnecting:
		return "reconnecting"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Info names the client in hello.
type Info struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Options configure a Client. The zero value is usable: an anonymous
// client with no local interface.
type Options struct {
	// Token is the client token (a JWT from the application's backend or
	// `herald token`).
	Token string
	// GetToken returns a fresh token. It is called when herald says
	// token_expired, before reconnecting with a token that has expired,
	// and when herald refuses the token at hello.
	GetToken func(ctx context.Context) (string, error)
	// Local is the local interface: a Go value whose methods take a
	// context.Context first (OnNotificationReceived(ctx, client.Batch)
	// error is presented as "onNotificationReceived"), or Methods. Only
	// these methods are presented in hello, and only they are ever called.
	// They are called one at a time, in the order herald sent the calls.
	Local any
	// Client names this client in hello.
	Client Info
	// Header is sent with the WebSocket handshake (e.g. Origin).
	Header http.Header
	// Dialer overrides the WebSocket dialer.
	Dialer *websocket.Dialer
	// CallTimeout bounds calls whose context has no deadline (default 15s:
	// above herald's default limits.call_timeout of 10s, so that herald's
	// -32050 for a plugin that does not answer arrives first; a
	// re-subscribe that timed out instead drops the connection).
	CallTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay between reconnect attempts:
	// it doubles from MinBackoff (default 250ms) up to MaxBackoff (default
	// 15s), and each delay is drawn at random from its upper half.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how often an idle connection is checked with ping
	// (default 25s; negative: never). A ping unanswered within CallTimeout
	// drops the connection, which is then re-established.
	PingInterval time.Duration
	// QueueSize bounds the calls waiting for the local interface (default
	// 4096). When it is full the client stops reading, and herald's own
	// bound on the connection's outbox applies.
	QueueSize int
	// OnState is told of every state change, with the error that caused
	// it, if any. It runs on the client's goroutine: do not block in it.
	OnState func(State, error)
	// OnUnrecovered is told of channels herald could not resume without a
	// gap (recovered: false: history lost in a restart, or the gap older
	// than the history window), and of those a $server resync names (a
	// resume delivered page by page that the history overtook, or, with
	// broker nats, a channel whose history aged out entirely and whose seq
	// starts again in a new epoch). Reload
	// their state through the application's API. It runs in order with the
	// local interface, before the channels' new notifications; the client
	// has then taken the channels' new positions.
	OnUnrecovered func(channels []string)
	// OnUnsubscribed is told of channels the client no longer holds
	// although it did not unsubscribe: herald ended them ($server
	// unsubscribed: the token expired past auth.expiry_grace, a plugin
	// ended the subscription, a reload removed the plugin that owned
	// them), or refused them when the client
	// re-subscribed after a reconnect (the other channels are
	// re-subscribed). A channel refused then with CodePluginUnavailable
	// (its plugin is restarting) is not reported here: it is kept, and
	// asked again on the same connection, with MinBackoff/MaxBackoff
	// between attempts, from its position, until herald takes it (it then
	// resumes as after any reconnect) or refuses it otherwise (it is then
	// dropped and reported here); if the connection ends first, the next
	// re-subscribe asks for it again. Channels reported here are not
	// resumed after a reconnect; subscribe
	// again to get them back (after a new token, when it expired). It runs
	// in order with the local interface, after the channels' last
	// notifications.
	OnUnsubscribed func(channels []Unsubscribed)
	// OnError is told of problems no call returns: a re-subscribe herald
	// refused (the channel is then dropped, and OnUnsubscribed told; or,
	// refused with CodePluginUnavailable, kept and asked again: each such
	// attempt is reported here once), a failed token refresh, a gap in a
	// channel's sequence. It runs on the client's goroutines.
	OnError func(error)
}

func (o *Options) defaults() {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 15 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 15 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.PingInterval == 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
}

// channelState is what the client knows of one subscribed channel.
type channelState struct {
	pos   Position
	known bool // pos is valid: a subscribe answered
	// waiting: the re-subscribe after a reconnect was refused with
	// CodePluginUnavailable (the plugin that owns the channel is
	// restarting). The channel is kept, and asked again on the same
	// connection (see hold) until herald takes or refuses it.
	waiting bool
}

// item is one call for the local interface (or an unrecovered or
// unsubscribed signal), queued in stream order.
type item struct {
	method       string
	params       json.RawMessage
	batch        *Batch
	reply        func(any, *Error) // nil for notifications
	unrecovered  []string
	unsubscribed []Unsubscribed
}

// Client is a connection to herald that stays up: see the package doc.
// Its methods are safe for concurrent use.
type Client struct {
	url   string
	opts  Options
	local *local

	ctx         context.Context // the client's lifetime
	cancel      context.CancelFunc
	queue       chan item
	wg          sync.WaitGroup // token refreshes
	runEnd      chan struct{}  // closed when run returns
	dispatchEnd chan struct{}  // closed when dispatch returns
	// dispatching is set while a local-interface method runs, so that a
	// Close called from one does not wait for itself.
	dispatching atomic.Bool

	mu         sync.Mutex
	state      State
	conn       *conn         // the current connection, nil unless Connected
	ready      chan struct{} // closed when Connected; replaced when the connection is lost
	token      string
	hello      HelloResult
	channels   map[string]*channelState
	refreshing bool
}

// Dial connects to herald's WebSocket URL (ws://host:port/ws), says hello
// presenting the local interface's methods, and keeps the connection up
// until Close. It fails when the first connection cannot be made; later
// losses are repaired in the background.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	opts.defaults()
	l, err := newLocal(opts.Local)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		url:         url,
		opts:        opts,
		local:       l,
		ctx:         cctx,
		cancel:      cancel,
		queue:       make(chan item, opts.QueueSize),
		runEnd:      make(chan struct{}),
		dispatchEnd: make(chan struct{}),
		ready:       make(chan struct{}),
		token:       opts.Token,
		channels:    map[string]*channelState{},
	}
	c.notifyState(Connecting, nil)
	first, err := c.connect(ctx)
	if err != nil {
		cancel()
		c.setState(Closed, err)
		return nil, err
	}
	go c.dispatch()
	go c.run(first)
	return c, nil
}

// Close ends the connection and stops reconnecting. Queued calls for the
// local interface are dropped; the method running (if any) finishes.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.state == Closed {
		c.mu.Unlock()
		return nil
	}
	cn := c.conn
	c.mu.Unlock()
	c.cancel()
	if cn != nil {
		cn.close(websocket.CloseNormalClosure, "client closed")
	}
	<-c.runEnd
	c.wg.Wait() // token refreshes
	if !c.dispatching.Load() {
		// (Called from a local-interface method, the dispatcher ends when
		// that method returns.)
		<-c.dispatchEnd
	}
	c.setState(Closed, nil)
	return nil
}

// State is the connection's current state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Hello is herald's answer to the current (or last) connection's hello.
func (c *Client) Hello() HelloResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hello
}

// Position is where the client stands in a subscribed channel: the seq of
// the last notification it handed on, and the channel's epoch.
func (c *Client) Position(channel string) (Position, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.channels[channel]
	if !ok || !st.known {
		return Position{}, false
	}
	return st.pos, true
}

// Channels lists the channels the client holds (and re-subscribes after a
// reconnect).
func (c *Client) Channels() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.channels))
	for ch := range c.channels {
		out = append(out, ch)
	}
	return out
}

func (c *Client) setState(s State, err error) {
	c.mu.Lock()
	changed := c.state != s
	c.state = s
	c.mu.Unlock()
	if changed {
		c.notifyState(s, err)
	}
}

func (c *Client) notifyState(s State, err error) {
	if c.opts.OnState != nil {
		c.opts.OnState(s, err)
	}
}

func (c *Client) reportError(err error) {
	if c.opts.OnError != nil {
		c.opts.OnError(err)
	}
}

// run keeps the connection up: it waits for the current one to end, then
// reconnects with backoff until it succeeds or the client is closed.
func (c *Client) run(cn *conn) {
	defer close(c.runEnd)
	attempt := 0
	for {
		err := c.hold(cn)
		c.mu.Lock()
		c.conn = nil
		c.ready = make(chan struct{})
		c.mu.Unlock()
		if c.ctx.Err() != nil {
			return
		}
		c.setState(Reconnecting, err)
		for {
			if !sleepCtx(c.ctx, backoff(c.opts.MinBackoff, c.opts.MaxBackoff, attempt)) {
				return
			}
			attempt++
			cn, err = c.connect(c.ctx)
			if err == nil {
				attempt = 0
				break
			}
			if c.ctx.Err() != nil {
				return
			}
			c.notifyState(Reconnecting, err)
		}
	}
}

// backoff is the delay before reconnect attempt n: exponential from min,
// capped at max, drawn from the upper half so that clients cut at once do
// not come back at once.
func backoff(min, max time.Duration, n int) time.Duration {
	d := min
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// hold waits for cn to end, pinging it when idle, and returns why it ended.
// While channels wait for their plugin (see resubscribe), it asks herald
// for them again on cn, with the reconnect backoff between attempts: cn
// owns those attempts, which end with it (the next connection's
// re-subscribe asks for them again) or when the client closes.
func (c *Client) hold(cn *conn) error {
	var tick <-chan time.Time
	if c.opts.PingInterval > 0 {
		t := time.NewTicker(c.opts.PingInterval)
		defer t.Stop()
		tick = t.C
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var retryC <-chan time.Time
	attempt := 0
	arm := func() {
		retryC = nil
		if c.hasWaiting() {
			retry.Reset(backoff(c.opts.MinBackoff, c.opts.MaxBackoff, attempt))
			retryC = retry.C
			attempt++
		}
	}
	arm()
	for {
		select {
		case <-retryC:
			c.retryWaiting(cn)
			arm()
		case <-cn.done:
			if code := cn.closeCode(); code != 0 {
				return fmt.Errorf("connection closed (%d): %w", code, cn.err)
			}
			return cn.err
		case <-c.ctx.Done():
			cn.close(websocket.CloseNormalClosure, "client closed")
			<-cn.done
			return ErrClosed
		case <-tick:
			ctx, cancel := context.WithTimeout(c.ctx, c.opts.CallTimeout)
			_, err := cn.call(ctx, "ping", nil, nil)
			cancel()
			if err != nil && c.ctx.Err() == nil {
				var rerr *Error
				if !errors.As(err, &rerr) { // an error reply is still an answer
					cn.close(websocket.CloseGoingAway, "ping unanswered")
				}
			}
		}
	}
}

// connect makes one connection ready: dial, hello, re-subscribe. On
// success it is the client's current connection and the state is Connected.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	tok, err := c.usableToken(ctx)
	if err != nil {
		return nil, err
	}
	cn, err := dialConn(ctx, c.url, &c.opts, c.handle)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*conn, error) {
		cn.close(websocket.CloseNormalClosure, "")
		<-cn.done
		return nil, err
	}
	hello, err := c.sayHello(ctx, cn, tok)
	var rerr *Error
	if errors.As(err, &rerr) && rerr.Code == CodeUnauthenticated && c.opts.GetToken != nil {
		if tok, err = c.freshToken(ctx); err != nil {
			return fail(err)
		}
		hello, err = c.sayHello(ctx, cn, tok)
	}
	if err != nil {
		return fail(err)
	}
	if err := c.resubscribe(ctx, cn); err != nil {
		return fail(err)
	}
	c.mu.Lock()
	c.hello = *hello
	c.conn = cn
	close(c.ready)
	c.mu.Unlock()
	c.setState(Connected, nil)
	return cn, nil
}

func (c *Client) sayHello(ctx context.Context, cn *conn, tok string) (*HelloResult, error) {
	params := map[string]any{"methods": c.local.names()}
	if tok != "" {
		params["token"] = tok
	}
	if c.opts.Client.Name != "" {
		params["client"] = c.opts.Client
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res, err := cn.call(ctx, "hello", params, nil)
	if err != nil {
		return nil, fmt.Errorf("hello: %w", err)
	}
	var h HelloResult
	if err := json.Unmarshal(res, &h); err != nil {
		return nil, fmt.Errorf("hello: bad result %s: %w", res, err)
	}
	return &h, nil
}

// resubscribe subscribes cn to every channel the client holds, resuming
// those with a known position. Subscribe is all or nothing: channels herald
// now refuses are dropped and reported (OnUnsubscribed, OnError), except
// those refused with CodePluginUnavailable (their plugin is restarting),
// which are kept, marked waiting and reported through OnError; the others
// are asked again, until herald takes them all. Each round drops or sets
// aside at least one channel, so it ends. The waiting channels are asked
// again later on the same connection: see hold.
func (c *Client) resubscribe(ctx context.Context, cn *conn) error {
	c.mu.Lock()
	for _, st := range c.channels {
		st.waiting = false // a new connection asks for every channel again
	}
	c.mu.Unlock()
	for {
		names, since := c.toAsk(false)
		if len(names) == 0 {
			return nil
		}
		dropped, waiting, err := c.askAgain(ctx, cn, names, since, "re-subscribe")
		if err != nil || dropped+waiting == 0 {
			return err
		}
	}
}

// toAsk lists the channels to subscribe again, with the positions to
// resume them from: those not waiting, or (waiting) only those waiting.
func (c *Client) toAsk(waiting bool) ([]string, map[string]Position) {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.channels))
	since := map[string]Position{}
	for ch, st := range c.channels {
		if st.waiting != waiting {
			continue
		}
		names = append(names, ch)
		if st.known {
			since[ch] = st.pos
		}
	}
	return names, since
}

// askAgain subscribes cn to channels the client holds, resuming them from
// since. On success they are live (subscribed, run on the reader, handles
// recovered true/false). When herald refuses some, those refused with
// CodePluginUnavailable are marked waiting and the others dropped; both
// are reported and counted; the caller asks again for the rest. A refusal
// of none of the channels asked, or another failure, is returned.
func (c *Client) askAgain(ctx context.Context, cn *conn, names []string, since map[string]Position, what string) (dropped, waiting int, err error) {
	params := map[string]any{"channels": names}
	if len(since) > 0 {
		params["since"] = since
	}
	cctx, cancel := c.withTimeout(ctx)
	_, err = cn.call(cctx, "subscribe", params, func(res json.RawMessage, rerr *Error) {
		if rerr == nil {
			c.subscribed(res, true)
		}
	})
	cancel()
	var rerr *Error
	if !errors.As(err, &rerr) || len(rerr.Refused()) == 0 {
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", what, err)
		}
		return 0, 0, nil
	}
	var ended []Unsubscribed
	var kept []string
	c.mu.Lock()
	for _, r := range rerr.Refused() {
		st, ok := c.channels[r.Channel]
		if !ok || !contains(names, r.Channel) {
			continue
		}
		if r.Code == CodePluginUnavailable {
			st.waiting = true
			kept = append(kept, r.Channel)
			continue
		}
		delete(c.channels, r.Channel)
		ended = append(ended, Unsubscribed{Channel: r.Channel, Reason: fmt.Sprintf("re-subscribe after a reconnect refused (%d): %s", r.Code, r.Reason)})
	}
	c.mu.Unlock()
	if len(ended) == 0 && len(kept) == 0 {
		// It refuses none of the channels asked: asking again
		// would be refused again.
		return 0, 0, fmt.Errorf("%s: %w", what, rerr)
	}
	if len(kept) > 0 {
		c.reportError(fmt.Errorf("%s: plugin unavailable for %q, kept and asked again later: %w", what, kept, rerr))
	}
	if len(ended) > 0 {
		c.reportError(fmt.Errorf("%s refused, channels dropped: %w", what, rerr))
		if c.opts.OnUnsubscribed != nil {
			c.enqueue(item{unsubscribed: ended})
		}
	}
	return len(ended), len(kept), nil
}

// retryWaiting asks herald again, on cn, for the channels whose plugin was
// unavailable. It returns when herald has answered for them: taken, still
// unavailable (kept waiting, for the next attempt), or refused otherwise
// (dropped; the others are then asked again at once).
func (c *Client) retryWaiting(cn *conn) {
	for {
		names, since := c.toAsk(true)
		if len(names) == 0 {
			return
		}
		dropped, _, err := c.askAgain(c.ctx, cn, names, since, "re-subscribe of channels whose plugin was unavailable")
		if err != nil {
			if c.ctx.Err() == nil && !errors.Is(err, ErrConnectionLost) {
				c.reportError(err) // still waiting: asked again next time
			}
			return
		}
		if dropped == 0 {
			return
		}
	}
}

// hasWaiting says whether some channel waits for its plugin.
func (c *Client) hasWaiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.channels {
		if st.waiting {
			return true
		}
	}
	return false
}

// subscribed records a subscribe result. It runs on the reader goroutine,
// before the notifications that follow the reply. With resume, a channel
// that herald could not recover gets its new position and is reported
// ahead of its new notifications.
func (c *Client) subscribed(res json.RawMessage, resume bool) {
	var r struct {
		Subscriptions []Subscription `json:"subscriptions"`
	}
	if json.Unmarshal(res, &r) != nil {
		return
	}
	var lost []string
	c.mu.Lock()
	for _, s := range r.Subscriptions {
		st, ok := c.channels[s.Channel]
		if !ok {
			if resume {
				continue // unsubscribed meanwhile
			}
			st = &channelState{}
			c.channels[s.Channel] = st
		}
		st.waiting = false
		switch {
		case s.Recovered != nil && *s.Recovered:
			st.pos.Epoch = s.Epoch // the replay follows from st.pos.Seq
		case s.Recovered != nil:
			lost = append(lost, s.Channel)
			st.pos, st.known = Position{Seq: s.Seq, Epoch: s.Epoch}, true
		case !st.known:
			st.pos, st.known = Position{Seq: s.Seq, Epoch: s.Epoch}, true
		}
	}
	c.mu.Unlock()
	if len(lost) > 0 && c.opts.OnUnrecovered != nil {
		c.enqueue(item{unrecovered: lost})
	}
}

// handle takes what the reader got that is not a reply: notifications and
// server calls. It runs on the reader goroutine.
func (c *Client) handle(cn *conn, m *wire) {
	isCall := len(m.ID) > 0 && string(m.ID) != "null"
	if m.Method == "" {
		if m.Error != nil {
			c.reportError(fmt.Errorf("herald could not read a frame of ours: %w", m.Error))
		}
		return
	}
	it := item{method: m.Method, params: m.Params}
	if isCall {
		id := m.ID
		it.reply = func(res any, rerr *Error) { cn.reply(id, res, rerr) }
		if _, ok := c.local.methods[m.Method]; !ok {
			// Herald calls only what hello presented; answer anyway.
			it.reply(nil, &Error{Code: CodeMethodNotFound, Message: fmt.Sprintf("the local interface has no method %q", m.Method)})
			return
		}
	}
	if m.Method == "onNotificationReceived" {
		var b Batch
		if err := json.Unmarshal(m.Params, &b); err != nil {
			c.reportError(fmt.Errorf("onNotificationReceived with bad params: %w", err))
			return
		}
		n := len(b.Notifications)
		parts, problems := c.accept(b.Notifications)
		for _, err := range problems {
			c.reportError(err)
		}
		if isCall {
			// One call, one answer: its signals follow it (herald sends
			// onNotificationReceived as a notification; this is for a
			// server that calls it).
			var all []Notification
			for _, p := range parts {
				all = append(all, p.ns...)
			}
			parts = []part{{ns: all, unrecovered: joinUnrecovered(parts), unsubscribed: joinUnsubscribed(parts)}}
		}
		for _, p := range parts {
			if len(p.ns) > 0 || isCall {
				bi := it
				bi.batch = &Batch{Notifications: p.ns}
				if len(p.ns) != n {
					bi.params, _ = json.Marshal(bi.batch)
				}
				c.enqueue(bi)
			}
			c.signal(p)
		}
		return
	}
	c.enqueue(it)
}

// signal queues what a part of a batch ends with: the channels to reload
// (resync) or that ended (unsubscribed), after the part's notifications
// and before the rest.
func (c *Client) signal(p part) {
	if len(p.unrecovered) > 0 && c.opts.OnUnrecovered != nil {
		c.enqueue(item{unrecovered: p.unrecovered})
	}
	if len(p.unsubscribed) > 0 && c.opts.OnUnsubscribed != nil {
		c.enqueue(item{unsubscribed: p.unsubscribed})
	}
}

func joinUnrecovered(parts []part) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p.unrecovered...)
	}
	return out
}

func joinUnsubscribed(parts []part) []Unsubscribed {
	var out []Unsubscribed
	for _, p := range parts {
		out = append(out, p.unsubscribed...)
	}
	return out
}

// part is a run of a batch's notifications and what follows them: a
// $server resync or unsubscribed ends a part, so that the app hears of it
// after what came before it and before what comes after.
type part struct {
	ns           []Notification
	unrecovered  []string
	unsubscribed []Unsubscribed
}

// accept keeps the notifications the application has not seen yet, in
// place, and advances each channel's position. Duplicates (seq at or below
// the position) cannot come from a correct server; they are dropped all
// the same. A token_expired starts a refresh; a resync moves its channels
// to the positions it gives (reported as unrecovered); an unsubscribed
// forgets its channels (reported as unsubscribed). Each of the last two
// ends a part: see part.
func (c *Client) accept(ns []Notification) ([]part, []error) {
	out := ns[:0]
	start := 0
	var parts []part
	cut := func(p part) {
		p.ns = out[start:len(out):len(out)]
		parts = append(parts, p)
		start = len(out)
	}
	var problems []error
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range ns {
		if n.Channel == ServerChannel {
			out = append(out, n)
			switch n.Event {
			case "token_expired":
				if err := c.startRefresh(); err != nil {
					problems = append(problems, err)
				}
			case "resync":
				lost, err := c.resyncLocked(n.Object)
				if err != nil {
					problems = append(problems, err)
				}
				if len(lost) > 0 {
					cut(part{unrecovered: lost})
				}
			case "unsubscribed":
				ended, err := c.forgetLocked(n.Object)
				if err != nil {
					problems = append(problems, err)
				}
				if len(ended) > 0 {
					cut(part{unsubscribed: ended})
				}
			}
			continue
		}
		st, ok := c.channels[n.Channel]
		if !ok || !st.known {
			out = append(out, n) // a channel a plugin subscribed us to
			continue
		}
		if n.Seq <= st.pos.Seq {
			continue
		}
		if n.Seq != st.pos.Seq+1 {
			problems = append(problems, fmt.Errorf("channel %q: seq %d follows %d: notifications are missing", n.Channel, n.Seq, st.pos.Seq))
		}
		st.pos.Seq = n.Seq
		out = append(out, n)
	}
	cut(part{})
	return parts, problems
}

// resyncLocked takes the positions of a $server resync's channels: the
// notifications that follow continue from there, as after a resume that
// answered recovered: false. It returns the channels listed.
func (c *Client) resyncLocked(object json.RawMessage) ([]string, error) {
	var o struct {
		Channels []struct {
			Channel string `json:"channel"`
			Seq     uint64 `json:"seq"`
			Epoch   string `json:"epoch"`
		} `json:"channels"`
	}
	if err := json.Unmarshal(object, &o); err != nil {
		return nil, fmt.Errorf("$server resync with a bad object %s: %w", object, err)
	}
	lost := make([]string, 0, len(o.Channels))
	for _, ch := range o.Channels {
		if st, ok := c.channels[ch.Channel]; ok {
			st.pos, st.known = Position{Seq: ch.Seq, Epoch: ch.Epoch}, true
		}
		lost = append(lost, ch.Channel)
	}
	return lost, nil
}

// forgetLocked drops the channels of a $server unsubscribed, which herald
// no longer delivers: a reconnect must not resume them. It returns them.
func (c *Client) forgetLocked(object json.RawMessage) ([]Unsubscribed, error) {
	var o struct {
		Channels []Unsubscribed `json:"channels"`
	}
	if err := json.Unmarshal(object, &o); err != nil {
		return nil, fmt.Errorf("$server unsubscribed with a bad object %s: %w", object, err)
	}
	for _, u := range o.Channels {
		delete(c.channels, u.Channel)
	}
	return o.Channels, nil
}

func (c *Client) enqueue(it item) {
	select {
	case c.queue <- it:
	case <-c.ctx.Done():
	}
}

// dispatch calls the local interface, one call at a time, in stream order.
func (c *Client) dispatch() {
	defer close(c.dispatchEnd)
	for {
		select {
		case <-c.ctx.Done():
			return
		case it := <-c.queue:
			c.dispatching.Store(true)
			c.run1(it)
			c.dispatching.Store(false)
		}
	}
}

func (c *Client) run1(it item) {
	if it.unrecovered != nil {
		c.opts.OnUnrecovered(it.unrecovered)
		return
	}
	if it.unsubscribed != nil {
		c.opts.OnUnsubscribed(it.unsubscribed)
		return
	}
	h, ok := c.local.methods[it.method]
	if !ok {
		return // a notification for a method we do not have: never call the app
	}
	var (
		res any
		err error
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("local interface method %s panicked: %v", it.method, p)
			}
		}()
		if bh, ok := c.local.batch[it.method]; ok && it.batch != nil {
			res, err = bh(c.ctx, it.batch)
		} else {
			res, err = h(c.ctx, it.params)
		}
	}()
	if it.reply != nil {
		if err != nil {
			it.reply(nil, callError(err))
		} else {
			it.reply(res, nil)
		}
	} else if err != nil {
		c.reportError(fmt.Errorf("local interface method %s: %w", it.method, err))
	}
}

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.opts.CallTimeout)
}

// current waits until the client is connected and returns the connection.
func (c *Client) current(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		st, cn, ready := c.state, c.conn, c.ready
		c.mu.Unlock()
		if st == Closed || c.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the connection: %w", ctx.Err())
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// Call calls a method on herald (a plugin's "<plugin>.<method>" or one of
// herald's own) and decodes its result into result (unless nil). It waits
// for the connection while the client reconnects; a context without a
// deadline gets Options.CallTimeout.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	cn, err := c.current(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	res, err := cn.call(ctx, method, params, nil)
	if err != nil {
		return err
	}
	if result != nil {
		if err := json.Unmarshal(res, result); err != nil {
			return fmt.Errorf("%s: decode result %s: %w", method, res, err)
		}
	}
	return nil
}

// Subscribe subscribes to channels. It is all or nothing: if herald refuses
// any, none is subscribed and the *Error's Refused says why. Channels the
// client already holds are answered from what it knows. Subscribed channels
// are kept across reconnects and resumed from their position.
func (c *Client) Subscribe(ctx context.Context, channels ...string) ([]Subscription, error) {
	if len(channels) == 0 {
		return nil, errors.New("subscribe: no channel given")
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	cn, err := c.current(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	var fresh []string
	out := make([]Subscription, 0, len(channels))
	c.mu.Lock()
	for _, ch := range channels {
		if st, ok := c.channels[ch]; ok && st.known {
			out = append(out, Subscription{Channel: ch, Seq: st.pos.Seq, Epoch: st.pos.Epoch})
		} else if !contains(fresh, ch) {
			fresh = append(fresh, ch)
		}
	}
	c.mu.Unlock()
	if len(fresh) == 0 {
		return out, nil
	}
	res, err := cn.call(ctx, "subscribe", map[string]any{"channels": fresh}, func(res json.RawMessage, rerr *Error) {
		if rerr == nil {
			c.subscribed(res, false)
		}
	})
	var rerr *Error
	if errors.As(err, &rerr) {
		// herald's answer, as is (its data.channels names each refused
		// one): errors from herald are *Error, as Call's are.
		return nil, rerr
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe %q: %w", fresh, err)
	}
	var r struct {
		Subscriptions []Subscription `json:"subscriptions"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return nil, fmt.Errorf("subscribe: bad result %s: %w", res, err)
	}
	return append(out, r.Subscriptions...), nil
}

// Unsubscribe ends subscriptions; they are not resumed after a reconnect.
func (c *Client) Unsubscribe(ctx context.Context, channels ...string) error {
	c.mu.Lock()
	for _, ch := range channels {
		delete(c.channels, ch)
	}
	cn := c.conn
	c.mu.Unlock()
	if cn == nil {
		return nil // herald forgot them with the connection
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	_, err := cn.call(ctx, "unsubscribe", map[string]any{"channels": channels}, nil)
	if errors.Is(err, ErrConnectionLost) {
		return nil
	}
	return err
}

// Presence asks who is subscribed to a channel the client holds.
func (c *Client) Presence(ctx context.Context, channel string) (Presence, error) {
	var p Presence
	err := c.Call(ctx, "presence", map[string]any{"channel": channel}, &p)
	return p, err
}

// Authenticate replaces the connection's token (and the one used to
// reconnect) with tok.
func (c *Client) Authenticate(ctx context.Context, tok string) error {
	c.mu.Lock()
	c.token = tok
	c.mu.Unlock()
	return c.Call(ctx, "authenticate", map[string]any{"token": tok}, nil)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
