package pluginhost_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/stretchr/testify/require"
)

// recorder is a real Core for tests: it numbers and keeps what plugins emit,
// tracks connections and subscriptions, and answers presence from them.
type recorder struct {
	mu       sync.Mutex
	seq      map[string]uint64
	emitted  []pluginhost.Notification
	count    int
	batches  int  // Emit calls: one per batch the plugin sent
	keep     bool // false in benchmarks: count only
	conns    map[string]*pluginhost.Connection
	onClient func(connID, method string, params json.RawMessage) (json.RawMessage, error)
	removed  []string // PluginRemoved calls: "plugin prefix,prefix"
	dropped  []string // PrefixesDropped calls, the same way
	// onRemoved, if set, runs in each PluginRemoved call.
	onRemoved func(plugin string, prefixes []string)
}

func newRecorder() *recorder {
	return &recorder{seq: map[string]uint64{}, conns: map[string]*pluginhost.Connection{}, keep: true}
}

func (r *recorder) Emit(_ context.Context, plugin string, ns []pluginhost.Notification) ([]pluginhost.Published, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]pluginhost.Published, len(ns))
	for i, n := range ns {
		r.seq[n.Channel]++
		s := r.seq[n.Channel]
		out[i] = pluginhost.Published{Channel: n.Channel, Seq: s, ID: n.Channel + "#" + strconv.FormatUint(s, 10)}
		if r.keep {
			n.Object = append(json.RawMessage(nil), n.Object...)
			r.emitted = append(r.emitted, n)
		}
	}
	r.count += len(ns)
	r.batches++
	return out, nil
}

func (r *recorder) Subscribe(_ context.Context, connID, channel string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.conns[connID]
	if !ok {
		return rpc.Errorf(rpc.CodeInvalidParams, "no connection %q", connID)
	}
	c.Channels = append(c.Channels, channel)
	return nil
}

func (r *recorder) Unsubscribe(context.Context, string, string, string, bool) error { return nil }

func (r *recorder) PrefixesDropped(plugin string, prefixes []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropped = append(r.dropped, plugin+" "+strings.Join(prefixes, ","))
}

func (r *recorder) PluginRemoved(plugin string, prefixes []string) {
	r.mu.Lock()
	r.removed = append(r.removed, plugin+" "+strings.Join(prefixes, ","))
	f := r.onRemoved
	r.mu.Unlock()
	if f != nil {
		f(plugin, prefixes)
	}
}

func (r *recorder) removals() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.removed...)
}

func (r *recorder) Presence(_ context.Context, channel string) (pluginhost.PresenceInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var p pluginhost.PresenceInfo
	seen := map[string]bool{}
	for _, c := range r.conns {
		for _, ch := range c.Channels {
			if ch == channel {
				p.Count++
				if !seen[c.UserID] {
					seen[c.UserID] = true
					p.Users = append(p.Users, c.UserID)
				}
			}
		}
	}
	sort.Strings(p.Users)
	return p, nil
}

func (r *recorder) CallClient(_ context.Context, connID, method string, params json.RawMessage) (json.RawMessage, error) {
	r.mu.Lock()
	f := r.onClient
	r.mu.Unlock()
	if f == nil {
		return nil, rpc.Errorf(rpc.CodeMethodNotFound, "client does not present %s", method)
	}
	return f(connID, method, params)
}

func (r *recorder) SubscribedTo(connID string, match func(string) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.conns[connID]; ok {
		for _, ch := range c.Channels {
			if match(ch) {
				return true
			}
		}
	}
	return false
}

func (r *recorder) Connections() []pluginhost.Connection {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []pluginhost.Connection
	for _, c := range r.conns {
		cc := *c
		cc.Channels = append([]string(nil), c.Channels...)
		out = append(out, cc)
	}
	return out
}

// AuthenticateHTTP: "Bearer key" is a backend, "Bearer user:<id>" a user.
func (r *recorder) AuthenticateHTTP(req *http.Request) (pluginhost.Caller, error) {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok:
		return pluginhost.Caller{}, errors.New("missing token")
	case tok == "key":
		return pluginhost.Caller{Backend: true}, nil
	case strings.HasPrefix(tok, "user:"):
		// "user:<id>@<ms>": a token whose rights end <ms> from now.
		id, ms, _ := strings.Cut(strings.TrimPrefix(tok, "user:"), "@")
		c := pluginhost.Caller{UserID: id, Token: tok}
		if n, err := strconv.Atoi(ms); err == nil {
			c.Until = time.Now().Add(time.Duration(n) * time.Millisecond)
		}
		return c, nil
	}
	return pluginhost.Caller{}, errors.New("bad token")
}

func (r *recorder) connect(id, user string, channels ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns[id] = &pluginhost.Connection{ConnID: id, UserID: user, Channels: channels}
}

func (r *recorder) objects(channel string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, n := range r.emitted {
		if n.Channel == channel {
			var o struct{ N int }
			_ = json.Unmarshal(n.Object, &o)
			out = append(out, o.N)
		}
	}
	return out
}

// The plugin binaries, built once per test run.
var bins struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		_ = os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

func bin(t testing.TB, name string) string {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "herald-plugins-")
		if bins.err != nil {
			return
		}
		for n, pkg := range map[string]string{
			"echo":     "../../examples/echo-plugin",
			"tester":   "../../internal/testplugins/tester",
			"emitter":  "../../internal/testplugins/emitter",
			"badshake": "../../internal/testplugins/badshake",
		} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(bins.dir, n), pkg).CombinedOutput()
			if err != nil {
				bins.err = fmt.Errorf("build %s: %v\n%s", n, err, out)
				return
			}
		}
	})
	require.NoError(t, bins.err)
	return filepath.Join(bins.dir, name)
}

func block(t testing.TB, name, binary string, env map[string]string) config.Plugin {
	p := config.Plugin{Name: name, Command: bin(t, binary), Env: env, Config: map[string]any{}}
	p.Hash = fmt.Sprintf("%s|%v", p.Command, env)
	return p
}

// checkGoroutines fails the test if goroutines outlive it.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines leaked:\n%s", n-before, buf[:runtime.Stack(buf, true)])
		}
	})
}

func newManager(t testing.TB, core pluginhost.Core, mod func(*pluginhost.Options)) *pluginhost.Manager {
	opts := pluginhost.Options{
		Core:       core,
		Logger:     hclog.New(&hclog.LoggerOptions{Name: "herald", Level: hclog.Warn, Output: os.Stderr}),
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	m := pluginhost.New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, m.Close(ctx))
	})
	return m
}

func rpcCode(t testing.TB, err error) int {
	t.Helper()
	var e *rpc.Error
	require.ErrorAs(t, err, &e)
	return e.Code
}

func statusOf(m *pluginhost.Manager, name string) pluginhost.Status {
	for _, s := range m.Status() {
		if s.Name == name {
			return s
		}
	}
	return pluginhost.Status{}
}

// waitRunning waits for the plugin to be running with at least restarts.
func waitRunning(t testing.TB, m *pluginhost.Manager, name string, restarts int) pluginhost.Status {
	t.Helper()
	var st pluginhost.Status
	require.Eventually(t, func() bool {
		st = statusOf(m, name)
		return st.State == pluginhost.StateRunning && st.Restarts >= restarts
	}, 20*time.Second, 10*time.Millisecond, "plugin %s never came back: %+v", name, st)
	return st
}

// Follow implements pluginhost.Core: the recorder keeps no history.
func (r *recorder) Follow(context.Context, string, *pluginhost.Position, int) (pluginhost.Follower, error) {
	return nil, errors.New("recorder: follow is not supported")
}
