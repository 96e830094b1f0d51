package sdktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/confine"
	"github.com/heraldhq/herald/sdk/hostcheck"
	"github.com/heraldhq/herald/sdk/internal/harness"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Timeout bounds every harness call and wait.
var Timeout = 10 * time.Second

// Harness is one running plugin and the host side around it.
type Harness struct {
	t          testing.TB
	rec        *recorder
	client     *plugin.Client
	plugin     pluginpb.PluginClient
	manifest   *pluginpb.Manifest
	cancel     context.CancelFunc
	closed     chan struct{}
	wg         sync.WaitGroup
	once       sync.Once
	panics     *panicGuard
	stopEvents context.CancelFunc // ends the event queue's goroutine
	// configured: Configure succeeded, so Close drains before it kills,
	// as Herald stops a running plugin; one that failed to configure is
	// killed without Drain, as Herald kills it.
	configured bool
}

// panicGuard turns a panic in a plugin hook into a failed test, unless
// the test said it expects them (AllowPanics).
type panicGuard struct {
	t       testing.TB
	mu      sync.Mutex
	allowed bool
}

func (g *panicGuard) onPanic(v, stack string) {
	g.mu.Lock()
	allowed := g.allowed
	g.mu.Unlock()
	if !allowed {
		g.t.Errorf("sdktest: the plugin panicked in a hook: %s (the host gets -32603 and the plugin lives on; call AllowPanics if the test expects it)\n%s", v, stack)
	}
}

// AllowPanics makes a panic in a plugin hook what it is in production, an
// internal error (-32603) and a log line, for a test that provokes one on
// purpose. Without it, such a panic fails the test.
func (h *Harness) AllowPanics() {
	h.panics.mu.Lock()
	h.panics.allowed = true
	h.panics.mu.Unlock()
}

// An Option tells the harness what else the plugin's `plugin` block in
// Herald's config says, beside its `config` block (Start's cfg).
type Option func(*block)

// block is what the options set: the plugin block's keys the host applies.
type block struct {
	emitChannels []string
}

// EmitChannels gives the harness the plugin block's emit_channels (exact
// channel names, or a prefix ending in "*"), as in Herald's config: the
// plugin may then emit to them beyond its own prefixes, and to nothing
// else. Without it, as without the key in Herald's config, the plugin emits
// to its own prefixes only. An entry Herald's config would refuse ("*"
// alone, "$server", ...) fails the start.
func EmitChannels(entries ...string) Option {
	return func(b *block) { b.emitChannels = append(b.emitChannels, entries...) }
}

// Start serves p in-process, dispenses it, configures it with cfg (the
// plugin's `config` block as Go values) and stops it when the test ends.
// opts say what else its `plugin` block holds (EmitChannels). A plugin
// that fails to configure fails the test; use StartErr to test that.
func Start(t testing.TB, p sdk.Plugin, cfg map[string]any, opts ...Option) *Harness {
	t.Helper()
	h, err := StartErr(t, p, cfg, opts...)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	return h
}

// StartErr is Start that returns the error instead of failing: Configure's,
// or what Herald refuses in the manifest (sdk/hostcheck.Manifest: a prefix
// that is invalid or Herald's own, an ExpiryKeeper prefix the plugin does
// not own, a route pattern that is malformed, declared twice, or on one of
// Herald's own paths), each problem in the words `herald validate` uses.
func StartErr(t testing.TB, p sdk.Plugin, cfg map[string]any, opts ...Option) (*Harness, error) {
	t.Helper()
	return startWith(t, p, cfg, NewState(), opts)
}

func startWith(t testing.TB, p sdk.Plugin, cfg map[string]any, st *State, opts []Option) (*Harness, error) {
	t.Helper()
	var blk block
	for _, o := range opts {
		o(&blk)
	}
	for i, e := range blk.emitChannels {
		if err := confine.CheckEntry(e); err != nil {
			return nil, fmt.Errorf("emit_channels[%d]: %w", i, err)
		}
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "sdktest", Level: hclog.Warn, Output: testWriter{t}})
	ctx, cancel := context.WithCancel(context.Background())
	reattach := make(chan *plugin.ReattachConfig, 1)
	closed := make(chan struct{})
	guard := &panicGuard{t: t}
	if err := harness.ServeInProcess(ctx, p, log, guard.onPanic, reattach, closed); err != nil {
		cancel()
		return nil, err
	}
	h := &Harness{t: t, rec: newRecorder(log), cancel: cancel, closed: closed, panics: guard}
	h.rec.state = st
	t.Cleanup(h.Close)

	var rc *plugin.ReattachConfig
	select {
	case rc = <-reattach:
	case <-time.After(Timeout):
		return h, errors.New("plugin did not start serving")
	}
	rc.Test = false // the harness stops the plugin through Kill, as Herald does
	rc.ReattachFunc = func() (runner.AttachedRunner, error) { return &inProcess{closed: closed, cancel: cancel}, nil }
	h.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: pluginpb.Handshake,
		// Reattaching skips version negotiation, so the set is given as is.
		Plugins:          pluginpb.PluginSets(&pluginpb.GRPCPlugin{})[pluginpb.ProtocolVersion],
		Reattach:         rc,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  pluginpb.DialOptions(pluginpb.DefaultMaxMessageBytes),
		Logger:           log,
	})
	cp, err := h.client.Client()
	if err != nil {
		return h, fmt.Errorf("connect: %w", err)
	}
	raw, err := cp.Dispense(pluginpb.PluginKey)
	if err != nil {
		return h, fmt.Errorf("dispense: %w", err)
	}
	c := raw.(*pluginpb.Conn)
	h.plugin = c.Plugin

	cctx, ccancel := context.WithTimeout(context.Background(), Timeout)
	defer ccancel()
	if h.manifest, err = h.plugin.GetManifest(cctx, &pluginpb.Empty{}); err != nil {
		return h, fmt.Errorf("manifest: %w", err)
	}
	if problems := hostcheck.Manifest(h.manifest.GetName(), h.manifest); len(problems) > 0 {
		// Herald does not start such a plugin (herald validate reports
		// each problem at the plugin block's command).
		return h, fmt.Errorf("manifest: %s", strings.Join(problems, "; "))
	}
	// Set before the Host service is served: read without a lock.
	h.rec.plugin = h.manifest.GetName()
	h.rec.rule = confine.New(h.manifest.GetPrefixes(), blk.emitChannels)
	h.rec.wantsEvents = h.manifest.GetWantsEvents()

	ectx, ecancel := context.WithCancel(context.Background())
	h.stopEvents = ecancel
	h.wg.Add(1)
	go func() { // ends when Close stops it
		defer h.wg.Done()
		h.rec.events.run(ectx, func(b *pluginpb.EventBatch) error {
			ctx, cancel := ctxT()
			defer cancel()
			_, err := h.plugin.Events(ctx, b)
			if err != nil {
				h.rec.log.Warn("events not delivered", "events", len(b.GetEvents()), "error", err)
			}
			return err
		})
	}()

	id := c.Broker.NextId()
	h.wg.Add(1)
	go func() { // ends when the broker closes (Close kills the client)
		defer h.wg.Done()
		c.Broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
			s := grpc.NewServer(append(opts, pluginpb.ServerOptions(pluginpb.DefaultMaxMessageBytes)...)...)
			pluginpb.RegisterHostServer(s, h.rec)
			return s
		})
	}()
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return h, fmt.Errorf("config: %w", err)
	}
	rep, err := h.plugin.Configure(cctx, &pluginpb.ConfigureRequest{Name: h.manifest.GetName(), ConfigJson: cfgJSON, HostServiceId: id})
	if err != nil {
		return h, fmt.Errorf("configure: %w", err)
	}
	if e := rep.GetError(); e != nil {
		return h, &sdk.Error{Code: int(e.GetCode()), Message: e.GetMessage(), Data: e.GetData()}
	}
	h.configured = true
	return h, nil
}

// Close drains and stops the plugin, as Herald stops it; Start registers
// it with t.Cleanup. A plugin that did not configure (StartErr returned an
// error) is killed without Drain, as Herald kills it.
func (h *Harness) Close() {
	h.once.Do(func() {
		if h.plugin != nil && h.configured {
			ctx, cancel := context.WithTimeout(context.Background(), Timeout)
			_, _ = h.plugin.Drain(ctx, &pluginpb.Empty{})
			cancel()
		}
		if h.stopEvents != nil {
			h.stopEvents()
		}
		if h.client != nil {
			h.client.Kill()
		}
		h.cancel()
		<-h.closed
		h.wg.Wait()
	})
}

// Manifest is the plugin's manifest as the host sees it.
type Manifest struct {
	Name, Version string
	Prefixes      []string
	Methods       map[string]bool // name -> backend only
	Routes        []string        // "GET /pattern"
	Authorizes    bool
	WantsEvents   bool
	// AllowAllSubscriptions: without an authorizer, the plugin's channels
	// are open to every caller (the host refuses them otherwise).
	AllowAllSubscriptions bool
	// ExpiryKeptPrefixes: sdk.ExpiryKeeper's prefixes.
	ExpiryKeptPrefixes []string
}

// Manifest returns what the plugin declared.
func (h *Harness) Manifest() Manifest {
	m := Manifest{Name: h.manifest.GetName(), Version: h.manifest.GetVersion(), Prefixes: h.manifest.GetPrefixes(),
		Methods: map[string]bool{}, Authorizes: h.manifest.GetAuthorizes(), WantsEvents: h.manifest.GetWantsEvents(),
		AllowAllSubscriptions: h.manifest.GetAllowAllSubscriptions(), ExpiryKeptPrefixes: h.manifest.GetExpiryKeptPrefixes()}
	for _, me := range h.manifest.GetMethods() {
		m.Methods[me.GetName()] = me.GetBackendOnly()
	}
	for _, r := range h.manifest.GetRoutes() {
		m.Routes = append(m.Routes, r.GetMethod()+" "+r.GetPattern())
	}
	return m
}

func ctxT() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), Timeout)
}

func callerPB(c sdk.Caller) *pluginpb.Caller {
	out := &pluginpb.Caller{ConnId: c.ConnID, UserId: c.UserID, Token: c.Token, Backend: c.Backend}
	if c.Claims != nil {
		out.ClaimsJson, _ = json.Marshal(c.Claims)
	}
	return out
}

// Backend is the caller of a backend holding an API key.
func Backend() sdk.Caller { return sdk.Caller{Backend: true} }

// Client is the caller for a connection made with Connect.
func (h *Harness) Client(connID string) sdk.Caller {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	c := h.rec.conns[connID]
	if c == nil {
		return sdk.Caller{ConnID: connID}
	}
	return sdk.Caller{ConnID: connID, UserID: c.userID, Claims: c.claims}
}

// Call calls a method as the host would (the manifest's backend-only rule is
// the host's job and is not applied here). No params (nil, or JSON null)
// reach the plugin as {}, as Herald passes a call without params. The call
// is given what Herald gives it: the larger of Timeout (in Herald,
// limits.call_timeout) and the method's own sdk.Method.Timeout, at most
// ten minutes; past it, the error is -32050 naming the bound. The answer
// is held to Herald's checks (package sdk/hostcheck): a result that is not
// one JSON value in UTF-8 is -32603, an empty one is null, and an error's
// code outside Herald's table becomes -32603 with the code named in its
// message. A coded error is an *sdk.Error.
func (h *Harness) Call(method string, caller sdk.Caller, params any) (json.RawMessage, error) {
	var p []byte
	switch v := params.(type) {
	case json.RawMessage:
		p = v
	case nil:
	default:
		var err error
		if p, err = json.Marshal(params); err != nil {
			return nil, err
		}
	}
	if t := bytes.TrimSpace(p); len(t) == 0 || string(t) == "null" {
		p = []byte("{}")
	}
	bound, declared := h.methodTimeout(method)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if caller.ConnID != "" { // as the host: meanwhile the plugin reaches it
		h.rec.enterCall(caller.ConnID)
		defer h.rec.exitCall(caller.ConnID)
	}
	name := h.manifest.GetName()
	rep, err := h.plugin.Call(ctx, &pluginpb.CallRequest{Method: method, Caller: callerPB(caller), Params: p})
	h.flushEvents()
	if err != nil {
		if ctx.Err() != nil || status.Code(err) == grpccodes.DeadlineExceeded {
			within := fmt.Sprintf("sdktest.Timeout (%s)", Timeout)
			if declared {
				within = fmt.Sprintf("%s (the timeout it declares for %s)", bound, method)
			}
			return nil, &sdk.Error{Code: sdk.CodePluginUnavailable, Message: fmt.Sprintf("plugin %q did not answer %s within %s: it is unavailable to this call, "+
				"which may or may not have taken effect, so retry later only what is safe to repeat", name, method, within)}
		}
		return nil, err
	}
	if e := rep.GetError(); e != nil {
		return nil, sdkError(hostcheck.PluginError(name, int(e.GetCode()), e.GetMessage(), e.GetData()))
	}
	res := json.RawMessage(rep.GetResult())
	if len(res) == 0 {
		res = json.RawMessage("null")
	}
	if e := hostcheck.Result(name, method, res); e != nil {
		return nil, sdkError(e)
	}
	return res, nil
}

// flushEvents waits until the plugin has handled the lifecycle events
// queued so far (those its call caused, such as the subscribed event of a
// Host.Subscribe), so that a test reads their effects when Call returns.
// Herald delivers them as promptly, but not in step with the reply.
func (h *Harness) flushEvents() {
	ctx, cancel := ctxT()
	defer cancel()
	if err := h.rec.events.wait(ctx, h.rec.events.mark()); errors.Is(err, context.DeadlineExceeded) {
		h.t.Errorf("sdktest: the plugin did not handle its lifecycle events within sdktest.Timeout (%s)", Timeout)
	}
}

// methodTimeout is how long a call of method is given, as Herald gives it
// (hostcheck.MethodTimeout, with Timeout for limits.call_timeout), and
// whether that is the method's own declared timeout.
func (h *Harness) methodTimeout(method string) (time.Duration, bool) {
	for _, me := range h.manifest.GetMethods() {
		if me.GetName() == method {
			t := hostcheck.MethodTimeout(Timeout, me.GetTimeoutMs())
			return t, t > Timeout
		}
	}
	return Timeout, false
}

func sdkError(e *hostcheck.Error) *sdk.Error {
	return &sdk.Error{Code: e.Code, Message: e.Message, Data: e.Data}
}

// Authorize asks the plugin about channels, as the host does: a plugin
// without an authorizer has them all refused unless its manifest allows all
// subscriptions. The answer is held to Herald's checks (sdk/hostcheck): a
// refusal of a channel that was not asked is a plugin error that refuses
// them all (-32603), a channel refused twice is listed once, a refusal's
// code outside Herald's table is -32003, a reason over 1 KiB is cut and
// ends "... (cut)", and an error's code outside the table is -32603.
func (h *Harness) Authorize(caller sdk.Caller, channels ...string) ([]sdk.Refusal, error) {
	if !h.manifest.GetAuthorizes() {
		if h.manifest.GetAllowAllSubscriptions() {
			return nil, nil
		}
		out := make([]sdk.Refusal, len(channels))
		for i, ch := range channels {
			out[i] = sdk.Refuse(ch, "the plugin implements no authorizer and does not allow open subscriptions")
		}
		return out, nil
	}
	ctx, cancel := ctxT()
	defer cancel()
	rep, err := h.plugin.Authorize(ctx, &pluginpb.AuthorizeRequest{Caller: callerPB(caller), Channels: channels})
	if err != nil {
		return nil, err
	}
	if e := rep.GetError(); e != nil {
		return nil, sdkError(hostcheck.PluginError(h.manifest.GetName(), int(e.GetCode()), e.GetMessage(), e.GetData()))
	}
	checked, e := hostcheck.Refusals(h.manifest.GetName(), channels, rep.GetRefusals())
	if e != nil {
		return nil, sdkError(e)
	}
	var out []sdk.Refusal
	for _, r := range checked {
		out = append(out, sdk.Refusal{Channel: r.Channel, Code: r.Code, Reason: r.Reason})
	}
	return out, nil
}

var kindPB = map[sdk.EventKind]pluginpb.EventKind{
	sdk.Connected: pluginpb.EventKind_EVENT_KIND_CONNECTED, sdk.Disconnected: pluginpb.EventKind_EVENT_KIND_DISCONNECTED,
	sdk.Subscribed: pluginpb.EventKind_EVENT_KIND_SUBSCRIBED, sdk.Unsubscribed: pluginpb.EventKind_EVENT_KIND_UNSUBSCRIBED,
	sdk.Reset: pluginpb.EventKind_EVENT_KIND_RESET,
}

// Events delivers lifecycle events, in order after those the harness
// queued itself (see Call), and applies them to the harness's own view of
// connections (so Presence and CallClient see them). It returns once the
// plugin handled them.
func (h *Harness) Events(evs ...sdk.Event) {
	h.t.Helper()
	var batch []*pluginpb.Event
	h.rec.mu.Lock()
	for _, ev := range evs {
		switch ev.Kind {
		case sdk.Connected:
			if h.rec.conns[ev.ConnID] == nil {
				h.rec.conns[ev.ConnID] = &conn{userID: ev.UserID, claims: ev.Claims, subs: map[string]bool{}}
			}
		case sdk.Disconnected:
			delete(h.rec.conns, ev.ConnID)
		case sdk.Subscribed:
			if c := h.rec.conns[ev.ConnID]; c != nil {
				c.subs[ev.Channel] = true
			}
		case sdk.Unsubscribed:
			if c := h.rec.conns[ev.ConnID]; c != nil {
				delete(c.subs, ev.Channel)
			}
		}
		pe := &pluginpb.Event{Kind: kindPB[ev.Kind], ConnId: ev.ConnID, UserId: ev.UserID, Channel: ev.Channel,
			Volatile: ev.Volatile, Replay: ev.Replay}
		if ev.Claims != nil {
			pe.ClaimsJson, _ = json.Marshal(ev.Claims)
		}
		batch = append(batch, pe)
	}
	n := h.rec.events.add(batch...)
	h.rec.mu.Unlock()
	ctx, cancel := ctxT()
	defer cancel()
	if err := h.rec.events.wait(ctx, n); err != nil {
		h.t.Fatalf("sdktest: events: %v", err)
	}
}

// Connect opens a connection for userID ("" for anonymous) and tells the plugin.
func (h *Harness) Connect(connID, userID string) {
	h.t.Helper()
	h.Events(sdk.Event{Kind: sdk.Connected, ConnID: connID, UserID: userID})
}

// Subscribe records that a connection subscribed to a channel (after the
// test checked Authorize, as the host would) and tells the plugin.
func (h *Harness) Subscribe(connID, channel string) {
	h.t.Helper()
	h.Events(sdk.Event{Kind: sdk.Subscribed, ConnID: connID, UserID: h.Client(connID).UserID, Channel: channel})
}

// Subscriptions lists a connection's channels, including those the plugin
// added with Host.Subscribe.
func (h *Harness) Subscriptions(connID string) []string {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	var out []string
	if c := h.rec.conns[connID]; c != nil {
		for ch := range c.subs {
			out = append(out, ch)
		}
	}
	return out
}

// OnCallClient sets how the connections answer Host.CallClient.
func (h *Harness) OnCallClient(f ClientFunc) {
	h.rec.mu.Lock()
	h.rec.onClient = f
	h.rec.mu.Unlock()
}

// Emitted returns every notification emitted so far, in history order.
func (h *Harness) Emitted() []Emitted {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	return append([]Emitted(nil), h.rec.emitted...)
}

// Batches is how many emit batches arrived (to see batching at work).
func (h *Harness) Batches() int {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	return h.rec.batches
}

// WaitEmitted waits until at least n notifications were emitted and returns
// them; it fails the test after Timeout.
func (h *Harness) WaitEmitted(n int) []Emitted {
	h.t.Helper()
	deadline := time.After(Timeout)
	for {
		h.rec.mu.Lock()
		if len(h.rec.emitted) >= n {
			out := append([]Emitted(nil), h.rec.emitted...)
			h.rec.mu.Unlock()
			return out
		}
		ch := h.rec.changed
		h.rec.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			h.t.Fatalf("sdktest: waited for %d notifications, got %d", n, len(h.Emitted()))
		}
	}
}

// Handler serves the plugin's declared HTTP routes as Herald serves them
// to a request authenticated as caller (sdktest.Backend() for an API key,
// any other Caller for a user token), streaming each chunk as the plugin
// flushes. As under Herald (sdk/hostcheck): a route's Auth is applied to
// caller (a user token on an AuthAPIKey route, or an API key on an
// AuthToken route, is a 403 with a JSON error), an AuthNone route gets no
// caller, the Authorization and Cookie headers do not reach the plugin,
// and a request no route serves gets a JSON 404, or a 405 with Allow when
// a route serves its path with another method. Whether a request
// authenticates at all (401) is Herald's business, not the plugin's, and
// is not tested here.
func (h *Harness) Handler(caller sdk.Caller) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range h.manifest.GetRoutes() {
		rt := rt
		mux.HandleFunc(rt.GetMethod()+" "+rt.GetPattern(), func(w http.ResponseWriter, r *http.Request) {
			c := caller
			if rt.GetAuth() == pluginpb.RouteAuth_ROUTE_AUTH_NONE {
				c = sdk.Caller{}
			} else if e := hostcheck.RouteCaller(rt.GetAuth(), caller.Backend); e != nil {
				writeError(w, http.StatusForbidden, e)
				return
			}
			h.forward(w, r, rt, c)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			status, allow, e := hostcheck.Unrouted(mux, r)
			if allow != "" {
				w.Header().Set("Allow", allow)
			}
			writeError(w, status, e)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// writeError writes Herald's JSON error body.
func writeError(w http.ResponseWriter, status int, e *hostcheck.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
}

func (h *Harness) forward(w http.ResponseWriter, r *http.Request, rt *pluginpb.Route, caller sdk.Caller) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, pluginpb.DefaultMaxMessageBytes/2))
	req := &pluginpb.HTTPRequest{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Body: body,
		Host: r.Host, RemoteAddr: r.RemoteAddr, Pattern: rt.GetPattern(), Caller: callerPB(caller),
		PathValues: map[string]string{}}
	for k, vs := range r.Header {
		if hostcheck.ForwardedHeader(k) {
			req.Headers = append(req.Headers, &pluginpb.Header{Name: k, Values: vs})
		}
	}
	for _, name := range patternNames(rt.GetPattern()) {
		req.PathValues[name] = r.PathValue(name)
	}
	stream, err := h.plugin.ServeHTTP(r.Context(), req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	first := true
	for {
		c, err := stream.Recv()
		if err != nil {
			if first {
				http.Error(w, "plugin: "+err.Error(), http.StatusBadGateway)
			}
			return
		}
		if first {
			for _, hd := range c.GetHeaders() {
				for _, v := range hd.GetValues() {
					w.Header().Add(hd.GetName(), v)
				}
			}
			w.WriteHeader(int(c.GetStatus()))
			first = false
		}
		_, _ = w.Write(c.GetBody())
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// patternNames lists the {name} wildcards of a ServeMux pattern.
func patternNames(p string) []string {
	var out []string
	for {
		i := bytes.IndexByte([]byte(p), '{')
		if i < 0 {
			return out
		}
		j := bytes.IndexByte([]byte(p[i:]), '}')
		if j < 0 {
			return out
		}
		name := p[i+1 : i+j]
		if len(name) > 3 && name[len(name)-3:] == "..." {
			name = name[:len(name)-3]
		}
		if name != "$" {
			out = append(out, name)
		}
		p = p[i+j+1:]
	}
}

// inProcess stands for the plugin "process" that go-plugin would otherwise
// wait for by pid (which, in-process, is the test itself).
type inProcess struct {
	closed <-chan struct{}
	cancel context.CancelFunc
}

func (p *inProcess) Wait(context.Context) error { <-p.closed; return nil }
func (p *inProcess) Kill(context.Context) error { p.cancel(); return nil }
func (p *inProcess) ID() string                 { return "in-process-" + strconv.Itoa(0) }
func (p *inProcess) PluginToHost(n, a string) (string, string, error) {
	return n, a, nil
}
func (p *inProcess) HostToPlugin(n, a string) (string, string, error) {
	return n, a, nil
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
