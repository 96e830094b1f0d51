package pluginhost_test

import (
	"encoding/json"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

var backend = pluginhost.Caller{Backend: true}

// A plugin emits to its own prefixes and to its block's emit_channels only;
// a batch with any other channel is refused whole, counted, and says which
// channel and how to allow it.
func TestEmitConfinedToOwnAndListedChannels(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	reg := prometheus.NewRegistry()
	m := newManager(t, core, func(o *pluginhost.Options) { o.Registerer = reg })
	p := block(t, "tester", "tester", nil)
	p.EmitChannels = []string{"news", "echo:r*", "alerts:*"}
	echo := block(t, "echo", "echo", nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{p, echo}))

	emit := func(channels ...string) (json.RawMessage, error) {
		params, _ := json.Marshal(map[string]any{"channels": channels})
		return m.Call(bg, "tester", "emit", backend, params)
	}
	_, err := emit("tester:a", "news", "echo:room", "echo:r:x:y")
	require.NoError(t, err)
	require.Equal(t, 4, core.count)

	for _, ch := range []string{
		"chat:user:42", // another plugin's namespace (nobody's here)
		"echo:alice",   // a running plugin's channel that the block does not list
		"config",       // the core's: fake servers_busy
		"newsroom",     // exact names are exact
		"alerts",       // "alerts:*" is a prefix with the colon
		"alerts:fire",  // listed, but no plugin owns "alerts": nobody could subscribe
		"testerx:a",    // not the tester prefix
	} {
		_, err := emit("tester:a", ch, "tester:b")
		require.Error(t, err, ch)
		var e *rpc.Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, rpc.CodeForbidden, e.Code, ch)
		require.Contains(t, e.Message, `"`+ch+`"`)
		require.Contains(t, e.Message, "emit_channels")
	}
	require.Equal(t, 4, core.count, "a refused batch publishes nothing, not even its allowed part")
	require.Equal(t, 21.0, metric(t, reg, "herald_plugin_emits_refused_total", "tester"))
	require.Equal(t, 4.0, metric(t, reg, "herald_plugin_emitted_notifications_total", "tester"))
	require.Equal(t, float64(core.batches), metric(t, reg, "herald_plugin_emit_batches_total", "tester"),
		"every batch the core accepted, and no refused one")
}

// While auth.open_channels is off no client can subscribe to an open
// channel, so a plugin's emit to one (listed in its emit_channels) is
// refused, naming the setting; the core's "config" is not an open channel.
// The setting is read at each emit: a reload that turns it back on lets
// the emit through.
func TestEmitToOpenChannelRefusedWhileOpenChannelsAreOff(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	var open atomic.Bool
	m := newManager(t, core, func(o *pluginhost.Options) { o.OpenChannels = open.Load })
	p := block(t, "tester", "tester", nil)
	p.EmitChannels = []string{"news", "config"}
	require.NoError(t, m.Apply(bg, []config.Plugin{p}))
	emit := func(channels ...string) error {
		params, _ := json.Marshal(map[string]any{"channels": channels})
		_, err := m.Call(bg, "tester", "emit", backend, params)
		return err
	}

	require.NoError(t, emit("tester:a", "config"))
	require.Equal(t, 2, core.count)
	err := emit("tester:a", "news")
	var e *rpc.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, rpc.CodeForbidden, e.Code)
	require.Contains(t, e.Message, `"news"`)
	require.Contains(t, e.Message, "auth.open_channels = false")
	require.Equal(t, 2, core.count, "a refused batch publishes nothing")

	open.Store(true)
	require.NoError(t, emit("tester:a", "news"))
	require.Equal(t, 4, core.count)
}

// metric reads one counter or gauge, by its plugin label, from a registry.
func metric(t *testing.T, reg *prometheus.Registry, name, plugin string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "plugin" && l.GetValue() == plugin {
					if g := mt.GetGauge(); g != nil {
						return g.GetValue()
					}
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{plugin=%q}", name, plugin)
	return 0
}

// Presence, client calls and subscriptions only on the plugin's own
// channels and connections.
func TestHostCallsConfinedToOwnChannels(t *testing.T) {
	checkGoroutines(t)
	core := newRecorder()
	core.connect("mine", "alice", "tester:room")
	core.connect("theirs", "bob", "echo:bob")
	core.onClient = func(conn, method string, _ json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage(`"answered by ` + conn + `"`), nil
	}
	m := newManager(t, core, nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	call := func(method string, params any) (json.RawMessage, error) {
		b, _ := json.Marshal(params)
		return m.Call(bg, "tester", method, backend, b)
	}

	res, err := call("presence", map[string]any{"channel": "tester:room"})
	require.NoError(t, err)
	require.JSONEq(t, `{"Count":1,"Users":["alice"]}`, string(res))
	_, err = call("presence", map[string]any{"channel": "echo:bob"})
	require.Equal(t, rpc.CodeForbidden, rpcCode(t, err), "presence of another plugin's channel")

	res, err = call("callClient", map[string]any{"conn": "mine", "method": "m"})
	require.NoError(t, err)
	require.JSONEq(t, `"answered by mine"`, string(res))
	_, err = call("callClient", map[string]any{"conn": "theirs", "method": "m"})
	require.Equal(t, rpc.CodeForbidden, rpcCode(t, err), "a connection not on any of its channels")
	_, err = call("callClient", map[string]any{"conn": "nobody", "method": "m"})
	require.Equal(t, rpc.CodeForbidden, rpcCode(t, err))
	// A connection calling the plugin may be called back during that call.
	res, err = m.Call(bg, "tester", "callClient", pluginhost.Caller{ConnID: "theirs", UserID: "bob"}, json.RawMessage(`{"conn":"theirs","method":"m"}`))
	require.NoError(t, err)
	require.JSONEq(t, `"answered by theirs"`, string(res))
	_, err = m.Call(bg, "tester", "callClient", pluginhost.Caller{ConnID: "theirs", UserID: "bob"}, json.RawMessage(`{"conn":"nobody","method":"m"}`))
	require.Equal(t, rpc.CodeForbidden, rpcCode(t, err), "but not another connection")

	// Params are spliced after "params": in the client's frame: one JSON
	// object or array, or none.
	var got []string
	core.onClient = func(_, _ string, params json.RawMessage) (json.RawMessage, error) {
		got = append(got, string(params))
		return json.RawMessage(`"ok"`), nil
	}
	for _, ok := range []string{`{"a":1}`, `[1,2]`, `null`} {
		_, err = call("callClient", map[string]any{"conn": "mine", "method": "m", "params": json.RawMessage(ok)})
		require.NoError(t, err, ok)
	}
	require.Equal(t, []string{`{"a":1}`, `[1,2]`, ``}, got, "null params are none")
	for _, bad := range []string{
		`{"a":1},"method":"onNotificationReceived"`, // would forge the frame
		`{"a":1}}`,
		`"text"`,
		`3`,
	} {
		params, _ := json.Marshal(map[string]any{"conn": "mine", "method": "m", "params": bad})
		_, err = m.Call(bg, "tester", "callClientRaw", backend, params)
		require.Equal(t, rpc.CodeInvalidParams, rpcCode(t, err), bad)
		require.ErrorContains(t, err, "one JSON object or array", bad)
	}
	require.Len(t, got, 3, "nothing of a refused call reaches the client")

	_, err = call("leave", map[string]any{"conn": "theirs", "channel": "echo:bob"})
	require.Equal(t, rpc.CodeForbidden, rpcCode(t, err), "unsubscribe from another plugin's channel")
	_, err = call("join", map[string]any{"conn": "theirs", "channel": "news"})
	require.Equal(t, rpc.CodeForbidden, rpcCode(t, err), "subscribe to a channel it does not own")
}

// A plugin without an authorizer has its channels closed unless it says
// they are open.
func TestNoAuthorizerRefusesUnlessAllowAll(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)
	closed := block(t, "closed", "tester", map[string]string{"TESTER_NO_AUTHORIZER": "1", "TESTER_PREFIX": "closed", "TESTER_ROUTE": "/closed/{id}"})
	open := block(t, "open", "tester", map[string]string{"TESTER_NO_AUTHORIZER": "1", "TESTER_ALLOW_ALL": "1", "TESTER_PREFIX": "open", "TESTER_ROUTE": "/open/{id}"})
	require.NoError(t, m.Apply(bg, []config.Plugin{closed, open}))

	alice := pluginhost.Caller{ConnID: "c1", UserID: "alice"}
	refused, err := m.Authorize(bg, "closed", alice, []string{"closed:a", "closed:ok"})
	require.NoError(t, err)
	require.Len(t, refused, 2)
	require.Equal(t, rpc.CodeForbidden, refused[0].Code)
	require.Contains(t, refused[0].Reason, "no authorizer")

	refused, err = m.Authorize(bg, "open", alice, []string{"open:a", "open:anything"})
	require.NoError(t, err)
	require.Empty(t, refused)
}

// A plugin gets PATH, HOME, TMPDIR and the locale, its block's env, and
// nothing else of herald's environment unless inherit_env is set.
func TestPluginEnvironmentIsMinimal(t *testing.T) {
	checkGoroutines(t)
	t.Setenv("HERALD_TOKEN_SECRET", "top-secret")
	t.Setenv("HERALD_API_KEY", "key-secret")
	t.Setenv("LC_ALL", "C.UTF-8")
	t.Setenv("TMPDIR", os.TempDir())
	m := newManager(t, newRecorder(), nil)
	minimal := block(t, "tester", "tester", map[string]string{"MINE": "given"})
	inherit := block(t, "t2", "tester", map[string]string{"TESTER_PREFIX": "t2", "TESTER_ROUTE": "/t2/{id}"})
	inherit.InheritEnv = true
	require.NoError(t, m.Apply(bg, []config.Plugin{minimal, inherit}))

	envOf := func(plugin string) map[string]string {
		res, err := m.Call(bg, plugin, "env", backend, nil)
		require.NoError(t, err)
		var kvs []string
		require.NoError(t, json.Unmarshal(res, &kvs))
		out := map[string]string{}
		for _, kv := range kvs {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
		return out
	}
	env := envOf("tester")
	require.NotContains(t, env, "HERALD_TOKEN_SECRET")
	require.NotContains(t, env, "HERALD_API_KEY")
	require.Equal(t, "given", env["MINE"])
	require.Equal(t, "C.UTF-8", env["LC_ALL"])
	require.Equal(t, os.Getenv("PATH"), env["PATH"])
	require.Equal(t, os.TempDir(), env["TMPDIR"])
	for k := range env {
		allowed := k == "PATH" || k == "HOME" || k == "TMPDIR" || k == "LANG" || k == "LANGUAGE" ||
			strings.HasPrefix(k, "LC_") || k == "MINE" || strings.HasPrefix(k, "HERALD_PLUGIN_") ||
			strings.HasPrefix(k, "PLUGIN_") // go-plugin's handshake variables
		require.True(t, allowed, "unexpected variable %s in a plugin's environment", k)
	}

	env = envOf("t2")
	require.Equal(t, "top-secret", env["HERALD_TOKEN_SECRET"], "inherit_env = true passes everything")
}

// The variables the host sets for a plugin win over its block's env: the
// message limit is the host's, whatever the block says.
func TestHostSetVariablesWinOverTheBlocksEnv(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", map[string]string{"HERALD_PLUGIN_MAX_MESSAGE_BYTES": "1"})}))
	res, err := m.Call(bg, "tester", "env", backend, nil)
	require.NoError(t, err)
	var kvs []string
	require.NoError(t, json.Unmarshal(res, &kvs))
	require.Contains(t, kvs, "HERALD_PLUGIN_MAX_MESSAGE_BYTES=16777216")
	require.NotContains(t, kvs, "HERALD_PLUGIN_MAX_MESSAGE_BYTES=1")
}

// A plugin refuses only the channels it is asked about: a refusal naming
// another (here another plugin's) would reach the client's data.channels
// as Herald's word, so such an answer is a plugin error, which refuses
// every channel asked. Refusal codes outside the contract's are -32003.
func TestAuthorizeRefusesOnlyAskedChannels(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)
	liar := block(t, "tester", "tester", map[string]string{"TESTER_REFUSE_ALSO": "echo:bob"})
	odd := block(t, "odd", "tester", map[string]string{"TESTER_PREFIX": "odd", "TESTER_ROUTE": "/odd/{id}", "TESTER_REFUSE_CODE": "1000"})
	require.NoError(t, m.Apply(bg, []config.Plugin{liar, odd}))
	alice := pluginhost.Caller{ConnID: "c1", UserID: "alice"}

	_, err := m.Authorize(bg, "tester", alice, []string{"tester:ok", "tester:a"})
	require.Equal(t, rpc.CodeInternal, rpcCode(t, err))
	require.ErrorContains(t, err, `plugin "tester"`)
	require.ErrorContains(t, err, `"echo:bob", a channel it was not asked about`)

	refused, err := m.Authorize(bg, "odd", alice, []string{"odd:ok", "odd:a", "odd:a"})
	require.NoError(t, err)
	require.Equal(t, []pluginhost.Refusal{{Channel: "odd:a", Code: rpc.CodeForbidden, Reason: "only :ok channels"}}, refused)
}
