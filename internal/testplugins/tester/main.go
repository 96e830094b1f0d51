// Command tester is a plugin for the host's tests: every hook, a crash on
// demand, and claims (prefix, route, version) taken from its config so that
// two blocks of it can collide.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/heraldhq/herald/sdk"
)

type config struct {
	Prefix  string `mapstructure:"prefix"`
	Route   string `mapstructure:"route"`
	Version string `mapstructure:"version"`
}

type tester struct {
	cfg    config
	mu     sync.Mutex
	events []sdk.Event
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
			{Name: "crash", Handler: func(context.Context, *sdk.Call) (any, error) {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}},
			{Name: "events", Handler: t.getEvents},
			{Name: "join", Handler: t.join},
			{Name: "admin", BackendOnly: true, Handler: func(context.Context, *sdk.Call) (any, error) { return "ok", nil }},
			{Name: "config", Handler: func(context.Context, *sdk.Call) (any, error) { return t.cfg, nil }},
		},
		Routes: []sdk.Route{{Method: "GET", Pattern: route, Auth: sdk.AuthToken, Handler: http.HandlerFunc(stream)}},
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (t *tester) Configure(_ context.Context, _ sdk.Host, cfg sdk.Config) error {
	return cfg.Decode(&t.cfg)
}

func (t *tester) Authorize(_ context.Context, c sdk.Caller, channels []string) ([]sdk.Refusal, error) {
	var out []sdk.Refusal
	for _, ch := range channels {
		if !strings.Contains(ch, ":ok") {
			out = append(out, sdk.Refuse(ch, "only :ok channels"))
		}
	}
	return out, nil
}

func (t *tester) HandleEvent(_ context.Context, _ sdk.Host, ev sdk.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
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

func stream(w http.ResponseWriter, r *http.Request) {
	c, _ := sdk.CallerFrom(r.Context())
	for i := 0; i < 3; i++ {
		fmt.Fprintf(w, "%s %s %d\n", r.PathValue("id"), c.UserID, i)
		w.(http.Flusher).Flush()
	}
}

func main() { sdk.Serve(&tester{}) }
