package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// server adapts the author's Plugin to the gRPC Plugin service.
type server struct {
	pluginpb.UnimplementedPluginServer

	p        Plugin
	manifest Manifest
	methods  map[string]Method
	routes   map[string]Route // by "METHOD pattern"
	log      hclog.Logger
	maxBytes int
	dial     func(id uint32) (*grpc.ClientConn, error) // dials the host's service
	// onPanic is told of each panic safe recovers from: nil in a served
	// plugin, sdktest's in a test (which fails the test).
	onPanic func(v, stack string)

	mu   sync.Mutex
	host *host
	conn *grpc.ClientConn
}

func newServer(p Plugin, log hclog.Logger, maxBytes int) (*server, error) {
	m := p.Manifest()
	if m.Name == "" {
		return nil, errors.New("manifest: Name is empty")
	}
	s := &server{p: p, manifest: m, methods: map[string]Method{}, routes: map[string]Route{},
		log: log, maxBytes: maxBytes}
	for _, me := range m.Methods {
		if me.Name == "" || me.Handler == nil {
			return nil, fmt.Errorf("manifest: method %q needs a name and a handler", me.Name)
		}
		if _, dup := s.methods[me.Name]; dup {
			return nil, fmt.Errorf("manifest: method %q declared twice", me.Name)
		}
		s.methods[me.Name] = me
	}
	for _, r := range m.Routes {
		if r.Method == "" || r.Pattern == "" || r.Handler == nil {
			return nil, fmt.Errorf("manifest: route %s %s needs a method, a pattern and a handler", r.Method, r.Pattern)
		}
		k := r.Method + " " + r.Pattern
		if _, dup := s.routes[k]; dup {
			return nil, fmt.Errorf("manifest: route %s declared twice", k)
		}
		s.routes[k] = r
	}
	return s, nil
}

// bind gives the server the go-plugin broker of its connection.
func (s *server) bind(b *plugin.GRPCBroker) pluginpb.PluginServer {
	s.dial = func(id uint32) (*grpc.ClientConn, error) {
		return b.DialWithOptions(id, pluginpb.DialOptions(s.maxBytes)...)
	}
	return s
}

func (s *server) GetManifest(context.Context, *pluginpb.Empty) (*pluginpb.Manifest, error) {
	m := &pluginpb.Manifest{Name: s.manifest.Name, Version: s.manifest.Version, Prefixes: s.manifest.Prefixes,
		AllowAllSubscriptions: s.manifest.AllowAllSubscriptions}
	for _, me := range s.manifest.Methods {
		m.Methods = append(m.Methods, &pluginpb.Method{Name: me.Name, BackendOnly: me.BackendOnly, TimeoutMs: timeoutMs(me.Timeout)})
	}
	for _, r := range s.manifest.Routes {
		m.Routes = append(m.Routes, &pluginpb.Route{Method: r.Method, Pattern: r.Pattern, Auth: pluginpb.RouteAuth(r.Auth)})
	}
	_, m.Authorizes = s.p.(Authorizer)
	_, m.WantsEvents = s.p.(EventHandler)
	expiryManifest(s.p, m)
	return m, nil
}

func (s *server) Configure(ctx context.Context, req *pluginpb.ConfigureRequest) (*pluginpb.ConfigureReply, error) {
	s.mu.Lock()
	if s.host != nil {
		s.mu.Unlock()
		return &pluginpb.ConfigureReply{Error: toPBError(Errorf(CodeInvalidParams, "plugin is already configured"))}, nil
	}
	conn, err := s.dial(req.GetHostServiceId())
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("dial host service: %w", err)
	}
	client := pluginpb.NewHostClient(conn)
	s.conn = conn
	s.host = &host{client: client, emit: newEmitter(client, s.log, s.maxBytes), log: s.log}
	h := s.host
	s.mu.Unlock()

	var cfg map[string]any
	if len(req.GetConfigJson()) > 0 {
		dec := json.NewDecoder(bytes.NewReader(req.GetConfigJson()))
		dec.UseNumber()
		if err := dec.Decode(&cfg); err != nil {
			return &pluginpb.ConfigureReply{Error: toPBError(InvalidParams("config: "+err.Error(), nil))}, nil
		}
	}
	if c, ok := s.p.(Configurer); ok {
		if err := s.safe(func() error { return c.Configure(ctx, h, Config{raw: cfg, dryRun: req.GetDryRun()}) }); err != nil {
			return &pluginpb.ConfigureReply{Error: toPBError(err)}, nil
		}
	} else if len(cfg) > 0 {
		// A plugin without the hook reads no config: a key given to it
		// would be accepted and ignored. Refused, naming the key, as a
		// key that a config struct does not have.
		if err := (Config{raw: cfg}).Decode(&struct{}{}); err != nil {
			return &pluginpb.ConfigureReply{Error: toPBError(err)}, nil
		}
	}
	return &pluginpb.ConfigureReply{}, nil
}

func (s *server) currentHost() *host {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host
}

// safe runs a hook, turning a panic into an internal error so that one bad
// call does not take the plugin down.
func (s *server) safe(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			stack := string(debug.Stack())
			s.log.Error("panic in plugin hook", "panic", fmt.Sprint(r), "stack", stack)
			if s.onPanic != nil {
				s.onPanic(fmt.Sprint(r), stack)
			}
			err = Internal(fmt.Sprintf("plugin panic: %v", r))
		}
	}()
	return f()
}

func (s *server) Authorize(ctx context.Context, req *pluginpb.AuthorizeRequest) (*pluginpb.AuthorizeReply, error) {
	a, ok := s.p.(Authorizer)
	if !ok {
		return &pluginpb.AuthorizeReply{}, nil
	}
	var refusals []Refusal
	err := s.safe(func() error {
		var err error
		refusals, err = a.Authorize(ctx, callerFromPB(req.GetCaller()), req.GetChannels())
		return err
	})
	if err != nil {
		return &pluginpb.AuthorizeReply{Error: toPBError(callError(ctx, "the subscription check", err))}, nil
	}
	out := &pluginpb.AuthorizeReply{Refusals: make([]*pluginpb.Refusal, 0, len(refusals))}
	for _, r := range refusals {
		code := r.Code
		if code == 0 {
			code = CodeForbidden
		}
		out.Refusals = append(out.Refusals, &pluginpb.Refusal{Channel: validUTF8(r.Channel), Code: int32(code), Reason: validUTF8(r.Reason)})
	}
	return out, nil
}

func (s *server) Call(ctx context.Context, req *pluginpb.CallRequest) (*pluginpb.CallReply, error) {
	me, ok := s.methods[req.GetMethod()]
	if !ok {
		return &pluginpb.CallReply{Error: toPBError(NotFound(fmt.Sprintf("method %s.%s not found", s.manifest.Name, req.GetMethod())))}, nil
	}
	h := s.currentHost()
	if h == nil {
		return &pluginpb.CallReply{Error: toPBError(Errorf(CodePluginUnavailable, "plugin %s is not configured yet", s.manifest.Name))}, nil
	}
	call := &Call{Method: req.GetMethod(), Caller: callerFromPB(req.GetCaller()), Params: req.GetParams(), Host: h, held: &heldList{}}
	var result any
	err := s.safe(func() error {
		var err error
		result, err = me.Handler(ctx, call)
		return err
	})
	if err != nil {
		what := fmt.Sprintf("the call of %s.%s", s.manifest.Name, req.GetMethod())
		return &pluginpb.CallReply{Error: toPBError(callError(ctx, what, err)), ReleaseHolds: call.held.list()}, nil
	}
	b, err := marshalObject(result)
	if err != nil {
		return &pluginpb.CallReply{Error: toPBError(Internal("marshal result: " + err.Error())), ReleaseHolds: call.held.list()}, nil
	}
	return &pluginpb.CallReply{Result: b, ReleaseHolds: call.held.list()}, nil
}

func (s *server) Events(ctx context.Context, batch *pluginpb.EventBatch) (*pluginpb.Empty, error) {
	eh, ok := s.p.(EventHandler)
	h := s.currentHost()
	if !ok || h == nil {
		return &pluginpb.Empty{}, nil
	}
	for _, e := range batch.GetEvents() {
		ev := eventFromPB(e)
		_ = s.safe(func() error { eh.HandleEvent(ctx, h, ev); return nil })
	}
	// The host gave up waiting (or went away) while the hook ran: hooks
	// that honour ctx may have skipped events, so the batch is not
	// acknowledged, and the host sends it again (or resyncs).
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	return &pluginpb.Empty{}, nil
}

func (s *server) Drain(ctx context.Context, _ *pluginpb.Empty) (*pluginpb.Empty, error) {
	if d, ok := s.p.(Drainer); ok {
		if err := s.safe(func() error { return d.Drain(ctx) }); err != nil {
			s.log.Warn("drain failed", "error", err)
		}
	}
	s.closeHost(ctx)
	return &pluginpb.Empty{}, nil
}

// closeHost flushes pending emits and closes the host connection.
func (s *server) closeHost(ctx context.Context) {
	s.mu.Lock()
	h, conn := s.host, s.conn
	s.mu.Unlock()
	if h != nil {
		h.emit.close(ctx)
	}
	if conn != nil {
		_ = conn.Close()
	}
}

func callerFromPB(c *pluginpb.Caller) Caller {
	if c == nil {
		return Caller{}
	}
	out := Caller{ConnID: c.GetConnId(), UserID: c.GetUserId(), Token: c.GetToken(), Backend: c.GetBackend()}
	if len(c.GetClaimsJson()) > 0 {
		_ = json.Unmarshal(c.GetClaimsJson(), &out.Claims)
	}
	return out
}

var eventKinds = map[pluginpb.EventKind]EventKind{
	pluginpb.EventKind_EVENT_KIND_CONNECTED:    Connected,
	pluginpb.EventKind_EVENT_KIND_DISCONNECTED: Disconnected,
	pluginpb.EventKind_EVENT_KIND_SUBSCRIBED:   Subscribed,
	pluginpb.EventKind_EVENT_KIND_UNSUBSCRIBED: Unsubscribed,
	pluginpb.EventKind_EVENT_KIND_RESET:        Reset,
}

func eventFromPB(e *pluginpb.Event) Event {
	ev := Event{Kind: eventKinds[e.GetKind()], ConnID: e.GetConnId(), UserID: e.GetUserId(),
		Channel: e.GetChannel(), Volatile: e.GetVolatile(), Replay: e.GetReplay()}
	if len(e.GetClaimsJson()) > 0 {
		_ = json.Unmarshal(e.GetClaimsJson(), &ev.Claims)
	}
	return ev
}

// drainTimeout bounds the SDK's own drain when the process is told to stop
// by a signal or loses its parent.
const drainTimeout = 5 * time.Second

// timeoutMs is a Method's Timeout on the wire, saturated to what fits.
func timeoutMs(d time.Duration) uint32 {
	ms := d.Milliseconds()
	switch {
	case ms <= 0:
		return 0
	case ms > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(ms)
}
