package sdk_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

// testPlugin exercises every hook.
type testPlugin struct {
	mu     sync.Mutex
	cfg    testConfig
	events []sdk.Event
	host   sdk.Host
}

type testConfig struct {
	Greeting string        `mapstructure:"greeting"`
	Limit    int           `mapstructure:"limit"`
	Window   time.Duration `mapstructure:"window"`
}

func (c testConfig) Validate() error {
	if c.Limit < 0 {
		return fmt.Errorf("limit: must not be negative, got %d", c.Limit)
	}
	return nil
}

func (p *testPlugin) Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name: "t", Version: "0.1.0", Prefixes: []string{"t"},
		Methods: []sdk.Method{
			{Name: "emit", Handler: p.emit},
			{Name: "panic", Handler: func(context.Context, *sdk.Call) (any, error) { panic("boom") }},
			{Name: "join", Handler: p.join},
			{Name: "config", Handler: func(context.Context, *sdk.Call) (any, error) { return p.cfg, nil }},
		},
		Routes: []sdk.Route{{Method: "GET", Pattern: "/v1/t/{id}/stream", Handler: http.HandlerFunc(p.stream)}},
	}
}

func (p *testPlugin) Configure(_ context.Context, h sdk.Host, cfg sdk.Config) error {
	p.host = h
	return cfg.Decode(&p.cfg)
}

func (p *testPlugin) HandleEvent(_ context.Context, _ sdk.Host, ev sdk.Event) {
	p.mu.Lock()
	p.events = append(p.events, ev)
	p.mu.Unlock()
}

func (p *testPlugin) emit(ctx context.Context, c *sdk.Call) (any, error) {
	var n struct{ Channel string }
	if err := c.Bind(&n); err != nil {
		return nil, err
	}
	return c.Host.Emit(ctx, sdk.Notification{Channel: n.Channel, Event: "e", ObjectType: "o", Object: map[string]int{"n": 1}})
}

func (p *testPlugin) join(ctx context.Context, c *sdk.Call) (any, error) {
	var r struct{ Channel string }
	if err := c.Bind(&r); err != nil {
		return nil, err
	}
	if err := c.Host.Subscribe(ctx, c.Caller.ConnID, r.Channel); err != nil {
		return nil, err
	}
	return c.Host.Presence(ctx, r.Channel)
}

func (p *testPlugin) stream(w http.ResponseWriter, r *http.Request) {
	c, _ := sdk.CallerFrom(r.Context())
	w.Header().Set("Content-Type", "text/plain")
	for i := 0; i < 3; i++ {
		fmt.Fprintf(w, "%s %s %d\n", r.PathValue("id"), c.UserID, i)
		w.(http.Flusher).Flush()
	}
}

func TestConfigDecodes(t *testing.T) {
	sdktest.CheckGoroutines(t)
	p := &testPlugin{}
	h := sdktest.Start(t, p, map[string]any{"greeting": "hi", "limit": 3, "window": "250ms"})
	res, err := h.Call("config", sdktest.Backend(), nil)
	require.NoError(t, err)
	require.JSONEq(t, `{"Greeting":"hi","Limit":3,"Window":250000000}`, string(res))
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		cfg  map[string]any
		want string
	}{
		{map[string]any{"limit": "many"}, "limit"},
		{map[string]any{"greting": "hi"}, "greting"},
		{map[string]any{"window": "soon"}, "window"},
		{map[string]any{"limit": -1}, "limit: must not be negative"},
	} {
		_, err := sdktest.StartErr(t, &testPlugin{}, tc.cfg)
		require.Error(t, err)
		require.Contains(t, err.Error(), tc.want)
	}
}

func TestCallErrorsAndPanics(t *testing.T) {
	sdktest.CheckGoroutines(t)
	h := sdktest.Start(t, &testPlugin{}, nil)
	_, err := h.Call("nope", sdktest.Backend(), nil)
	var e *sdk.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, sdk.CodeMethodNotFound, e.Code)

	h.AllowPanics()
	_, err = h.Call("panic", sdktest.Backend(), nil)
	require.ErrorAs(t, err, &e)
	require.Equal(t, sdk.CodeInternal, e.Code)

	// The plugin survived the panic.
	_, err = h.Call("emit", sdktest.Backend(), map[string]string{"channel": "t:1"})
	require.NoError(t, err)
}

// errorRecorder is a testing.TB whose Errorf is recorded rather than
// failing the test, to see what sdktest reports.
type errorRecorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *errorRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *errorRecorder) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// A panic in a hook under sdktest fails the test that provoked it (the
// host side still gets -32603, as in production), unless AllowPanics.
func TestPanicInAHookFailsTheTest(t *testing.T) {
	rec := &errorRecorder{TB: t}
	h := sdktest.Start(rec, &testPlugin{}, nil)
	_, err := h.Call("panic", sdktest.Backend(), nil)
	var e *sdk.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, sdk.CodeInternal, e.Code)
	errs := rec.errors()
	require.Len(t, errs, 1)
	require.Contains(t, errs[0], "panicked in a hook: boom")

	h.AllowPanics()
	_, err = h.Call("panic", sdktest.Backend(), nil)
	require.ErrorAs(t, err, &e)
	require.Len(t, rec.errors(), 1)
}

func TestManifestDiscoversHooks(t *testing.T) {
	h := sdktest.Start(t, &testPlugin{}, nil)
	m := h.Manifest()
	require.Equal(t, "t", m.Name)
	require.False(t, m.Authorizes)
	require.True(t, m.WantsEvents)
	require.Equal(t, []string{"GET /v1/t/{id}/stream"}, m.Routes)
	require.False(t, m.AllowAllSubscriptions)
	refused, err := h.Authorize(sdk.Caller{UserID: "u"}, "t:anything")
	require.NoError(t, err)
	require.Len(t, refused, 1, "a plugin without Authorizer has its channels closed")

	open := sdktest.Start(t, openPlugin{}, nil)
	require.True(t, open.Manifest().AllowAllSubscriptions)
	refused, err = open.Authorize(sdk.Caller{UserID: "u"}, "o:anything")
	require.NoError(t, err)
	require.Empty(t, refused, "AllowAllSubscriptions opens them")
}

type openPlugin struct{}

func (openPlugin) Manifest() sdk.Manifest {
	return sdk.Manifest{Name: "o", Prefixes: []string{"o"}, AllowAllSubscriptions: true}
}

func TestConcurrentEmitsAreBatchedAndAcknowledgedInOrder(t *testing.T) {
	sdktest.CheckGoroutines(t)
	p := &testPlugin{}
	h := sdktest.Start(t, p, nil)
	const workers, each = 32, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := fmt.Sprintf("t:%d", w)
			for i := 1; i <= each; i++ {
				pub, err := p.host.Emit(context.Background(), sdk.Notification{Channel: ch, Event: "e", ObjectType: "o", Object: i})
				if err != nil {
					errs <- err
					return
				}
				if pub[0].Seq != uint64(i) || pub[0].Channel != ch {
					errs <- fmt.Errorf("%s: emit %d acknowledged as %+v", ch, i, pub[0])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	ns := h.Emitted()
	require.Len(t, ns, workers*each)
	require.Less(t, h.Batches(), workers*each, "concurrent emits share batches")
}

func TestEmitManyInOneCallIsSplitIntoBatches(t *testing.T) {
	p := &testPlugin{}
	h := sdktest.Start(t, p, nil)
	ns := make([]sdk.Notification, 3000)
	for i := range ns {
		ns[i] = sdk.Notification{Channel: "t:big", Event: "e", ObjectType: "o", Object: i}
	}
	pub, err := p.host.Emit(context.Background(), ns...)
	require.NoError(t, err)
	require.Len(t, pub, 3000)
	for i, x := range pub {
		require.Equal(t, uint64(i+1), x.Seq)
	}
	require.GreaterOrEqual(t, h.Batches(), 3)
}

// A notification the host would refuse, or whose strings gRPC cannot
// encode (not UTF-8), fails its own Emit with -32602 naming the field,
// before anything is sent: it never takes down the emit stream and the
// Emits in flight on it.
func TestEmitRefusesBadFieldsAloneAndKeepsTheStream(t *testing.T) {
	sdktest.CheckGoroutines(t)
	p := &testPlugin{}
	h := sdktest.Start(t, p, nil)
	ctx := context.Background()

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() { // emits in flight meanwhile
			defer wg.Done()
			for i := range 200 {
				if _, err := p.host.Emit(ctx, sdk.Notification{Channel: fmt.Sprintf("t:%d", w), Event: "e", ObjectType: "o", Object: i}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for _, tc := range []struct {
		n     sdk.Notification
		field string
		msg   string
	}{
		{sdk.Notification{Channel: "t:a", Event: "\xff", ObjectType: "o"}, "event", "not valid UTF-8"},
		{sdk.Notification{Channel: "t:a", Event: "e", ObjectType: "o\xc3"}, "object_type", "not valid UTF-8"},
		{sdk.Notification{Channel: "t:a", Event: "e", ObjectType: "o", ObjectName: "\xff"}, "object_name", "not valid UTF-8"},
		{sdk.Notification{Channel: "t:\xff", Event: "e", ObjectType: "o"}, "channel", "only printable ASCII"},
		{sdk.Notification{Channel: "t:a b", Event: "e", ObjectType: "o"}, "channel", "only printable ASCII"},
		{sdk.Notification{Channel: "", Event: "e", ObjectType: "o"}, "channel", "channel is empty"},
		{sdk.Notification{Channel: "t:", Event: "e", ObjectType: "o"}, "channel", "ends at its prefix"},
		{sdk.Notification{Channel: "t:a", ObjectType: "o"}, "event", "event is required"},
		{sdk.Notification{Channel: "t:a", Event: "e"}, "object_type", "object_type is required"},
	} {
		for range 20 {
			_, err := p.host.Emit(ctx, sdk.Notification{Channel: "t:ok", Event: "e", ObjectType: "o"}, tc.n)
			var e *sdk.Error
			require.ErrorAs(t, err, &e, tc.field)
			require.Equal(t, sdk.CodeInvalidParams, e.Code, tc.field)
			require.Contains(t, e.Message, "notification 1", tc.field)
			require.Contains(t, e.Message, tc.msg, tc.field)
			require.JSONEq(t, `{"notification":1,"field":"`+tc.field+`"}`, string(e.Data))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "an Emit in flight failed with a bad one")
	}
	require.Len(t, h.Emitted(), 8*200, "nothing of a refused Emit was sent")
}

func TestEventsAndHostSubscribe(t *testing.T) {
	p := &testPlugin{}
	h := sdktest.Start(t, p, nil)
	h.Connect("c1", "alice")
	h.Connect("c2", "bob")
	h.Subscribe("c2", "t:room")

	res, err := h.Call("join", h.Client("c1"), map[string]string{"channel": "t:room"})
	require.NoError(t, err)
	require.JSONEq(t, `{"Count":2,"Users":["alice","bob"]}`, string(res))
	require.Contains(t, h.Subscriptions("c1"), "t:room")

	_, err = h.Call("join", h.Client("c1"), map[string]string{"channel": "other:room"})
	var e *sdk.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, sdk.CodeForbidden, e.Code, "a plugin subscribes connections only to its own channels")

	p.mu.Lock()
	defer p.mu.Unlock()
	// The fourth is the plugin's own Host.Subscribe of c1, which Herald
	// (and so the harness) tells the plugin of.
	require.Len(t, p.events, 4)
	require.Equal(t, sdk.Connected, p.events[0].Kind)
	require.Equal(t, sdk.Subscribed, p.events[2].Kind)
	require.Equal(t, "t:room", p.events[2].Channel)
	require.Equal(t, sdk.Event{Kind: sdk.Subscribed, ConnID: "c1", UserID: "alice", Channel: "t:room"}, p.events[3])
}

func TestHTTPRouteStreams(t *testing.T) {
	sdktest.CheckGoroutines(t)
	h := sdktest.Start(t, &testPlugin{}, nil)
	srv := httptest.NewServer(h.Handler(sdk.Caller{UserID: "alice"}))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/v1/t/42/stream")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "text/plain", resp.Header.Get("Content-Type"))
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	require.Equal(t, []string{"42 alice 0", "42 alice 1", "42 alice 2"}, lines)

	resp2, err := http.Get(srv.URL + "/v1/nothing")
	require.NoError(t, err)
	resp2.Body.Close()
	require.Equal(t, 404, resp2.StatusCode)
	srv.CloseClientConnections()
}

// Many large concurrent emits overflow the SDK's bounded queue: Emit waits
// for room, and every notification still arrives once, in each emitter's
// order, with the acknowledgement matching what was sent.
func TestEmitsBeyondTheQueueWaitAndKeepOrder(t *testing.T) {
	sdktest.CheckGoroutines(t)
	p := &testPlugin{}
	h := sdktest.Start(t, p, nil)
	const workers, calls, per = 32, 2, 900 // 28,800 at once: more than queue and window hold
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := fmt.Sprintf("t:q%d", w)
			for c := 0; c < calls; c++ {
				ns := make([]sdk.Notification, per)
				for i := range ns {
					ns[i] = sdk.Notification{Channel: ch, Event: "e", ObjectType: "o", Object: c*per + i}
				}
				pub, err := p.host.Emit(context.Background(), ns...)
				if err != nil {
					errs <- err
					return
				}
				for i, x := range pub {
					if x.Channel != ch || x.Seq != uint64(c*per+i+1) {
						errs <- fmt.Errorf("%s: notification %d acknowledged as %+v", ch, c*per+i, x)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	next := map[string]int{}
	ns := h.Emitted()
	require.Len(t, ns, workers*calls*per)
	for _, n := range ns {
		want := strconv.Itoa(next[n.Channel])
		require.Equal(t, want, string(n.Object), "%s in order", n.Channel)
		next[n.Channel]++
	}
}

// panicRoute is a plugin whose one route panics after writing, before
// anything was flushed.
type panicRoute struct{}

func (panicRoute) Manifest() sdk.Manifest {
	return sdk.Manifest{Name: "pr", Version: "0.1.0", Prefixes: []string{"pr"},
		Routes: []sdk.Route{{Method: "GET", Pattern: "/v1/pr/panic", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("half a line"))
			panic("route boom")
		})}}}
}

// A route handler that panics before anything reached the client answers
// a JSON 500, as Herald's own errors are, not an empty body.
func TestPanickingRouteAnswersAJSONError(t *testing.T) {
	sdktest.CheckGoroutines(t)
	h := sdktest.Start(t, panicRoute{}, nil)
	h.AllowPanics()
	srv := httptest.NewServer(h.Handler(sdk.Caller{UserID: "alice"}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/pr/panic")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, 500, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.JSONEq(t, `{"error":{"code":-32603,"message":"plugin panic: route boom"}}`, string(body))
	srv.CloseClientConnections()
}

// headRoute is a plugin whose one GET route says which method reached it.
type headRoute struct{}

func (headRoute) Manifest() sdk.Manifest {
	return sdk.Manifest{Name: "hr", Version: "0.1.0", Prefixes: []string{"hr"},
		Routes: []sdk.Route{{Method: "GET", Pattern: "/v1/hr/x", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Method", r.Method)
			_, _ = w.Write([]byte("body"))
		})}}}
}

// A GET route answers HEAD too, as net/http's patterns do (the host
// matches HEAD to it), with the headers and no body.
func TestGETRouteAnswersHEAD(t *testing.T) {
	h := sdktest.Start(t, headRoute{}, nil)
	srv := httptest.NewServer(h.Handler(sdk.Caller{UserID: "alice"}))
	defer srv.Close()
	resp, err := http.Head(srv.URL + "/v1/hr/x")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "HEAD", resp.Header.Get("X-Method"))
	require.Empty(t, body)
	srv.CloseClientConnections()
}

// The SDK's bound on one notification is named in its error, with what it
// counts and that it is no setting.
func TestEmitOverThePerNotificationLimitSaysWhatTheLimitIs(t *testing.T) {
	p := &testPlugin{}
	sdktest.Start(t, p, nil)
	_, err := p.host.Emit(context.Background(), sdk.Notification{Channel: "t:big", Event: "e", ObjectType: "o", Object: strings.Repeat("x", 2<<20)})
	var e *sdk.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, sdk.CodeLimitExceeded, e.Code)
	require.Contains(t, e.Message, "limit of 1048576 bytes per notification")
	require.Contains(t, e.Message, "not a setting")
}

// badUTF8Plugin refuses with a reason, and fails a method with a message,
// that are not UTF-8.
type badUTF8Plugin struct{}

func (badUTF8Plugin) Manifest() sdk.Manifest {
	return sdk.Manifest{Name: "bu", Version: "0.1.0", Prefixes: []string{"bu"},
		Methods: []sdk.Method{{Name: "m", Handler: func(context.Context, *sdk.Call) (any, error) {
			return nil, sdk.Errorf(sdk.CodeInvalidParams, "bad \xff byte")
		}}}}
}

func (badUTF8Plugin) Authorize(_ context.Context, _ sdk.Caller, channels []string) ([]sdk.Refusal, error) {
	return []sdk.Refusal{sdk.Refuse(channels[0], "not \xfe yours")}, nil
}

// A reason or message that is not UTF-8 reaches the caller with the bad
// bytes replaced, rather than failing the reply in gRPC's marshalling.
func TestNonUTF8ReasonsAndMessagesReachTheCaller(t *testing.T) {
	h := sdktest.Start(t, badUTF8Plugin{}, nil)
	refusals, err := h.Authorize(h.Client("c1"), "bu:x")
	require.NoError(t, err)
	require.Len(t, refusals, 1)
	require.Equal(t, "not \uFFFD yours", refusals[0].Reason)
	_, err = h.Call("m", h.Client("c1"), nil)
	var e *sdk.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, sdk.CodeInvalidParams, e.Code)
	require.Equal(t, "bad \uFFFD byte", e.Message)
}
