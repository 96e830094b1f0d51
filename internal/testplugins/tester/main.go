// Command tester is a plugin for the host's tests: every hook, a crash on
// demand, and claims (prefix, route, version) taken from its config so that
// two blocks of it can collide.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heraldhq/herald/sdk"
)

type config struct {
	Prefix  string `mapstructure:"prefix"`
	Route   string `mapstructure:"route"`
	Version string `mapstructure:"version"`
}

type tester struct {
	cfg    config
	host   sdk.Host
	mu     sync.Mutex
	events []sdk.Event
	// stalls: the next len(stalls) events each block for that long and,
	// when the host gave up on them meanwhile, are not recorded (a hook
	// that honours its context).
	stalls []time.Duration
}

func (t *tester) Manifest() sdk.Manifest {
	// The manifest is read before Configure, so claims come from the
	// environment (the block's env) rather than from config.
	prefix, route, version := env("TESTER_PREFIX", "tester"), env("TESTER_ROUTE", "/v1/tester/{id}/stream"), env("TESTER_VERSION", "1.0.0")
	return sdk.Manifest{
		Name: "tester", Version: version, Prefixes: []string{prefix},
		Methods: []sdk.Method{
			{Name: "emitN", Handler: t.emitN},
			{Name: "flood", Handler: t.flood},
			{Name: "cpu", Handler: cpuTime},
			{Name: "spin", Handler: spin},
			{Name: "crash", Handler: func(context.Context, *sdk.Call) (any, error) {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}},
			{Name: "events", Handler: t.getEvents},
			{Name: "join", Handler: t.join},
			{Name: "admin", BackendOnly: true, Handler: func(context.Context, *sdk.Call) (any, error) { return "ok", nil }},
			{Name: "config", Handler: func(context.Context, *sdk.Call) (any, error) { return t.cfg, nil }},
			{Name: "env", Handler: func(context.Context, *sdk.Call) (any, error) { return os.Environ(), nil }},
			{Name: "emit", Handler: t.emit},
			{Name: "presence", Handler: t.presence},
			{Name: "callClient", Handler: t.callClient},
			{Name: "callClientRaw", Handler: callClientRaw},
			{Name: "leave", Handler: t.leave},
			{Name: "stallEvents", Handler: t.stallEvents},
			{Name: "online", Handler: t.online},
			{Name: "spawn", Handler: spawn},
			{Name: "raw", Handler: raw},
			{Name: "print", Handler: print},
			{Name: "block", Handler: block},
			{Name: "fail", Handler: fail},
		},
		Routes:                []sdk.Route{{Method: "GET", Pattern: route, Auth: sdk.AuthToken, Handler: http.HandlerFunc(stream)}},
		AllowAllSubscriptions: os.Getenv("TESTER_ALLOW_ALL") != "",
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (t *tester) Configure(_ context.Context, h sdk.Host, cfg sdk.Config) error {
	// TESTER_CONFIGURE_DELAY slows the start down (a restart window a test
	// can observe); TESTER_CONFIGURE_FAIL makes it fail; TESTER_START_FAIL
	// makes it fail on a real start only, not in a dry run (a plugin whose
	// config is right but whose store cannot be opened).
	if d, err := time.ParseDuration(os.Getenv("TESTER_CONFIGURE_DELAY")); err == nil {
		h.Logger().Info("configure delayed", "delay", d) // a duration in the plugin's log
		time.Sleep(d)
	}
	if msg := os.Getenv("TESTER_CONFIGURE_FAIL"); msg != "" {
		return errors.New(msg)
	}
	if msg := os.Getenv("TESTER_START_FAIL"); msg != "" && !cfg.DryRun() {
		return errors.New(msg)
	}
	// TESTER_STATE_UNTIL names a file: until it exists, a real start fails
	// as a plugin's does while its State cannot be reached (NATS not up).
	if f := os.Getenv("TESTER_STATE_UNTIL"); f != "" && !cfg.DryRun() {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("tester: open its store: %w", sdk.ErrStateUnavailable)
		}
	}
	t.host = h
	return cfg.Decode(&t.cfg)
}

// Drain emits one last notification to tester:drained and, when
// TESTER_DRAIN_FILE names a file, writes there what the host answered:
// "ok <seq>" or the error.
func (t *tester) Drain(ctx context.Context) error {
	path := os.Getenv("TESTER_DRAIN_FILE")
	if path == "" || t.host == nil {
		return nil
	}
	res := "ok"
	pub, err := t.host.Emit(ctx, sdk.Notification{Channel: "tester:drained", Event: "drained", ObjectType: "n", Object: map[string]string{"by": "drain"}})
	if err != nil {
		res = "error " + err.Error()
	} else {
		res = fmt.Sprintf("ok %d", pub[0].Seq)
	}
	return os.WriteFile(path, []byte(res), 0o600)
}

// Authorize allows the channels holding ":ok". TESTER_REFUSE_ALSO names a
// channel it refuses as well, asked or not, and TESTER_REFUSE_CODE the code
// of its refusals: what a faulty plugin might answer.
func (t *tester) Authorize(_ context.Context, c sdk.Caller, channels []string) ([]sdk.Refusal, error) {
	var out []sdk.Refusal
	code, _ := strconv.Atoi(os.Getenv("TESTER_REFUSE_CODE"))
	for _, ch := range channels {
		if !strings.Contains(ch, ":ok") {
			out = append(out, sdk.Refusal{Channel: ch, Code: code, Reason: "only :ok channels"})
		}
	}
	if also := os.Getenv("TESTER_REFUSE_ALSO"); also != "" {
		out = append(out, sdk.Refuse(also, "refused too"))
	}
	return out, nil
}

func (t *tester) HandleEvent(ctx context.Context, _ sdk.Host, ev sdk.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.stalls) > 0 {
		d := t.stalls[0]
		t.stalls = t.stalls[1:]
		t.mu.Unlock()
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		t.mu.Lock()
		if ctx.Err() != nil {
			return // the host gave up on this delivery: not applied
		}
	}
	if ev.Kind == sdk.Reset {
		t.events = nil
	}
	t.events = append(t.events, ev)
}

func (t *tester) getEvents(context.Context, *sdk.Call) (any, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.events, nil
}

// emitN emits objects {"n": from..from+count-1} to channel, one Emit per
// notification, in order; it returns once all are acknowledged.
func (t *tester) emitN(ctx context.Context, c *sdk.Call) (any, error) {
	var p struct {
		Channel     string
		From, Count int
	}
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	var last uint64
	for i := p.From; i < p.From+p.Count; i++ {
		pub, err := c.Host.Emit(ctx, sdk.Notification{Channel: p.Channel, Event: "n", ObjectType: "n", Object: map[string]int{"n": i}})
		if err != nil {
			return nil, err
		}
		last = pub[0].Seq
	}
	return map[string]uint64{"last_seq": last}, nil
}

// cpuTime answers the plugin process's CPU time so far (user + system, in
// nanoseconds), so a benchmark can charge the plugin side its share.
func cpuTime(context.Context, *sdk.Call) (any, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return nil, err
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), nil
}

// spin {ms, workers, done} keeps workers goroutines busy on the CPU for
// ms, whatever becomes of its call (its ctx is not looked at): a plugin
// that is merely busy, not hung. Then it creates the file done names (if
// any), so that a test whose call timed out learns it is over, and answers.
func spin(_ context.Context, c *sdk.Call) (any, error) {
	var p struct {
		Ms, Workers int
		Done        string
	}
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	until := time.Now().Add(time.Duration(p.Ms) * time.Millisecond)
	var wg sync.WaitGroup
	for range max(p.Workers, 1) {
		wg.Add(1)
		go func() { // ends at until
			defer wg.Done()
			n := 0
			for time.Now().Before(until) {
				n++
			}
			_ = n
		}()
	}
	wg.Wait()
	if p.Done != "" {
		if err := os.WriteFile(p.Done, nil, 0o600); err != nil {
			return nil, err
		}
	}
	return "ok", nil
}

// flood emits count small notifications from workers goroutines at once,
// per notifications per Emit call (1 when unset), and returns when all are
// acknowledged.
func (t *tester) flood(ctx context.Context, c *sdk.Call) (any, error) {
	var p struct {
		Channel             string
		Count, Workers, Per int
	}
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	if p.Per < 1 {
		p.Per = 1
	}
	obj := []byte(`{"k":"v"}`)
	var wg sync.WaitGroup
	errs := make(chan error, p.Workers)
	for w := 0; w < p.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := fmt.Sprintf("%s:%d", p.Channel, w)
			// This worker's share: notifications w, w+Workers, ...
			mine := 0
			if w < p.Count {
				mine = (p.Count-w-1)/p.Workers + 1
			}
			ns := make([]sdk.Notification, 0, p.Per)
			for mine > 0 {
				ns = ns[:0]
				for len(ns) < p.Per && mine > 0 {
					ns = append(ns, sdk.Notification{Channel: ch, Event: "e", ObjectType: "o", Object: obj})
					mine--
				}
				if _, err := c.Host.Emit(ctx, ns...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	return p.Count, nil
}

func (t *tester) join(ctx context.Context, c *sdk.Call) (any, error) {
	var p struct{ Conn, Channel string }
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	if err := c.Host.Subscribe(ctx, p.Conn, p.Channel); err != nil {
		return nil, err
	}
	return c.Host.Presence(ctx, p.Channel)
}

// emit emits one notification to each of channels in one batch.
func (t *tester) emit(ctx context.Context, c *sdk.Call) (any, error) {
	var p struct{ Channels []string }
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	ns := make([]sdk.Notification, len(p.Channels))
	for i, ch := range p.Channels {
		ns[i] = sdk.Notification{Channel: ch, Event: "e", ObjectType: "o", Object: map[string]int{"i": i}}
	}
	return c.Host.Emit(ctx, ns...)
}

func (t *tester) presence(ctx context.Context, c *sdk.Call) (any, error) {
	var p struct{ Channel string }
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	return c.Host.Presence(ctx, p.Channel)
}

func (t *tester) callClient(ctx context.Context, c *sdk.Call) (any, error) {
	var p struct {
		Conn, Method string
		Params       json.RawMessage
	}
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	return c.Host.CallClient(ctx, p.Conn, p.Method, p.Params)
}

func (t *tester) leave(ctx context.Context, c *sdk.Call) (any, error) {
	var p struct{ Conn, Channel string }
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	return "ok", c.Host.Unsubscribe(ctx, p.Conn, p.Channel)
}

// stallEvents {count, ms}: the next count events each block for ms.
func (t *tester) stallEvents(_ context.Context, c *sdk.Call) (any, error) {
	var p struct{ Count, Ms int }
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for range p.Count {
		t.stalls = append(t.stalls, time.Duration(p.Ms)*time.Millisecond)
	}
	return "ok", nil
}

// online answers the users the plugin believes connected, from the events
// it applied since the last Reset, sorted.
func (t *tester) online(context.Context, *sdk.Call) (any, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	conns := map[string]string{}
	for _, ev := range t.events {
		switch ev.Kind {
		case sdk.Connected:
			conns[ev.ConnID] = ev.UserID
		case sdk.Disconnected:
			delete(conns, ev.ConnID)
		}
	}
	seen := map[string]bool{}
	users := []string{}
	for _, u := range conns {
		if !seen[u] {
			seen[u] = true
			users = append(users, u)
		}
	}
	sort.Strings(users)
	return users, nil
}

// spawn starts a child process in the plugin's process group and answers
// its pid: it must die with the plugin.
func spawn(context.Context, *sdk.Call) (any, error) {
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait() }() // reaped by us while we live
	return cmd.Process.Pid, nil
}

// stream writes three lines; with ?follow=1 a line every 50ms until the
// request ends, and with ?crash=1 one line before the process dies.
func stream(w http.ResponseWriter, r *http.Request) {
	c, _ := sdk.CallerFrom(r.Context())
	for i := 0; i < 3 || r.URL.Query().Get("follow") != ""; i++ {
		fmt.Fprintf(w, "%s %s %d\n", r.PathValue("id"), c.UserID, i)
		w.(http.Flusher).Flush()
		if r.URL.Query().Get("crash") != "" {
			time.Sleep(100 * time.Millisecond) // the line leaves first
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		if i >= 2 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// noAuthorizer is the tester without its Authorizer hook
// (TESTER_NO_AUTHORIZER): a plugin that leaves its channels to the host's
// default.
type noAuthorizer struct{ t *tester }

func (n noAuthorizer) Manifest() sdk.Manifest { return n.t.Manifest() }
func (n noAuthorizer) Configure(ctx context.Context, h sdk.Host, cfg sdk.Config) error {
	return n.t.Configure(ctx, h, cfg)
}
func (n noAuthorizer) HandleEvent(ctx context.Context, h sdk.Host, ev sdk.Event) {
	n.t.HandleEvent(ctx, h, ev)
}
func (n noAuthorizer) Drain(ctx context.Context) error { return n.t.Drain(ctx) }

var (
	_ sdk.Authorizer   = (*tester)(nil)
	_ sdk.Configurer   = (*tester)(nil)
	_ sdk.EventHandler = (*tester)(nil)
	_ sdk.Drainer      = (*tester)(nil)
	_ sdk.Configurer   = noAuthorizer{}
	_ sdk.EventHandler = noAuthorizer{}
	_ sdk.Drainer      = noAuthorizer{}
)

func main() {
	t := &tester{}
	if os.Getenv("TESTER_NO_AUTHORIZER") != "" {
		sdk.Serve(noAuthorizer{t})
		return
	}
	sdk.Serve(t)
}

// raw answers with the bytes of params.b64 as they are, JSON or not: what
// a faulty plugin might send.
func raw(_ context.Context, c *sdk.Call) (any, error) {
	var p struct{ B64 string }
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(p.B64)
	if err != nil {
		return nil, sdk.InvalidParams("params.b64: "+err.Error(), nil)
	}
	return json.RawMessage(b), nil
}

// print writes params.text N times (params.n, at least once) to stdout and
// to stderr, as a plugin author's fmt.Println does: plain output, not the
// SDK's logger.
func print(_ context.Context, c *sdk.Call) (any, error) {
	var p struct {
		Text string
		N    int
	}
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	for i := range max(1, p.N) {
		fmt.Fprintf(os.Stdout, "%s %d\n", p.Text, i)
		fmt.Fprintf(os.Stderr, "%s %d (stderr)\n", p.Text, i)
	}
	return "ok", nil
}

// block answers only when its call is cancelled; it first creates the file
// params.entered names, so that a test knows the call is under way.
func block(ctx context.Context, c *sdk.Call) (any, error) {
	var p struct{ Entered string }
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	if p.Entered != "" {
		if err := os.WriteFile(p.Entered, nil, 0o600); err != nil {
			return nil, err
		}
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// fail answers with the error params describe as it is (data from
// data_b64, JSON or not): what a faulty plugin might send.
func fail(_ context.Context, c *sdk.Call) (any, error) {
	var p struct {
		Code    int
		Message string
		DataB64 string `json:"data_b64"`
	}
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	data, err := base64.StdEncoding.DecodeString(p.DataB64)
	if err != nil {
		return nil, sdk.InvalidParams("params.data_b64: "+err.Error(), nil)
	}
	return nil, &sdk.Error{Code: p.Code, Message: p.Message, Data: data}
}

// callClientRaw calls a client with the text of params.params as its
// params, JSON or not: what a faulty plugin might send.
func callClientRaw(ctx context.Context, c *sdk.Call) (any, error) {
	var p struct{ Conn, Method, Params string }
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	return c.Host.CallClient(ctx, p.Conn, p.Method, json.RawMessage(p.Params))
}
