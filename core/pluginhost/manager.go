package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/sdk/hostcheck"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Manager. Zero values take the documented defaults.
type Options struct {
	Logger     hclog.Logger          // default: hclog.NewNullLogger()
	Core       Core                  // required
	Registerer prometheus.Registerer // default: a private registry (metrics not exported)
	// StartTimeout bounds a plugin's start: handshake, manifest, configure.
	// Default DefaultStartTimeout.
	StartTimeout time.Duration
	// CallTimeout bounds one call, authorization, event delivery or client
	// call. Default 30s.
	CallTimeout time.Duration
	// BackoffMin and BackoffMax bound the delay before restarting a plugin
	// that exited; it doubles per failed attempt and resets once a plugin
	// stayed up for BackoffMax. Defaults 200ms and 30s.
	BackoffMin, BackoffMax time.Duration
	// MaxMessageBytes is the gRPC message limit on both sides of every
	// plugin connection. Default 16 MiB.
	MaxMessageBytes int
	// StopTimeout bounds stopping one plugin (drain, then kill; an
	// unresponsive one is killed without a drain). Default 10s.
	StopTimeout time.Duration
	// WriteTimeout bounds writing one chunk of a streamed HTTP route's
	// response (delivery.write_timeout); a client that takes no data for
	// that long is cut off. Default 10s.
	WriteTimeout time.Duration
	// State opens the plugins' State stores (sdk.State); nil: plugins
	// have none.
	State StateOpener
	// LogLinesPerSecond bounds the lines each plugin process writes into
	// herald's log (log.plugin_lines_per_second); 0: no bound.
	LogLinesPerSecond int
	// OpenChannels reports whether clients may subscribe to open channels
	// (auth.open_channels, which a reload changes): while it is false, a
	// plugin's emit to an open channel is refused. nil: always true.
	OpenChannels func() bool
}

// DefaultStartTimeout is Options.StartTimeout's default. What a plugin
// waits for while it starts (its State store, say) must give up well
// before it, so that its own error, not the start's deadline, is the one
// reported.
const DefaultStartTimeout = 10 * time.Second

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 200 * time.Millisecond
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(30*time.Second, o.BackoffMin)
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = pluginpb.DefaultMaxMessageBytes
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
}

// Status is one plugin as `herald plugins` and GET /v1/plugins show it.
type Status struct {
	Name     string   `json:"name"`
	State    State    `json:"state"`
	Version  string   `json:"version,omitempty"`
	Prefixes []string `json:"prefixes"`
	Methods  []string `json:"methods"`
	Routes   []string `json:"routes"`
	Restarts int      `json:"restarts"`
	// LastError is why the plugin is down (restarting or failed); empty
	// once it runs again.
	LastError string `json:"last_error,omitempty"`
	// LastExit is how its previous process ended, kept after it recovered:
	// "killed by signal SIGKILL", "exited with status 2".
	LastExit string    `json:"last_exit,omitempty"`
	Since    time.Time `json:"since"`
	PID      int       `json:"pid,omitempty"`
}

// Manager starts, supervises and routes to the plugins.
type Manager struct {
	opts Options
	log  hclog.Logger
	met  *metrics

	applyMu sync.Mutex // one Apply or Close at a time
	booted  bool
	closed  bool

	mu      sync.RWMutex
	plugins map[string]*supervisor
	owners  map[string]string // channel prefix -> plugin

	routes atomic.Pointer[http.ServeMux]

	states stateStores

	refusals refusalLog // emits refused, logged once per plugin and prefix
	// ending is cancelled by EndStreams: streamed route responses end.
	ending    context.Context
	endStream context.CancelFunc
}

// New returns a Manager with no plugins; Apply starts them.
func New(opts Options) *Manager {
	opts.defaults()
	m := &Manager{opts: opts, log: opts.Logger.Named("pluginhost"), met: newMetrics(opts.Registerer),
		plugins: map[string]*supervisor{}, owners: map[string]string{}}
	m.routes.Store(http.NewServeMux())
	m.ending, m.endStream = context.WithCancel(context.Background())
	return m
}

// Apply makes the running plugins match the config: it starts new blocks,
// stops removed ones and restarts changed ones (by config.Plugin.Hash),
// leaving unchanged plugins, and every client connection, alone. The
// subscriptions to a removed plugin's channels end (Core.PluginRemoved);
// those of a changed plugin stay while it restarts.
//
// The first Apply is the boot: any plugin that cannot start (bad command,
// handshake mismatch, start timeout, configure error) or that claims a
// channel prefix or HTTP route another plugin claims makes Apply stop every
// plugin it started and return an error naming the plugin(s). On a later
// Apply (reload), such a plugin is left in state "failed" with its error,
// the others keep running, and Apply returns the errors.
func (m *Manager) Apply(ctx context.Context, plugins []config.Plugin) error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	if m.closed {
		return errors.New("plugin manager is closed")
	}
	boot := !m.booted
	m.booted = true

	want := make(map[string]config.Plugin, len(plugins))
	for _, p := range plugins {
		if _, dup := want[p.Name]; dup {
			return fmt.Errorf("plugin %q is declared twice", p.Name)
		}
		want[p.Name] = p
	}

	// Stop removed and changed plugins first, so that a changed plugin may
	// keep its prefixes. A changed (or failed) plugin stays registered while
	// it restarts: its prefixes stay owned and its calls answer -32050
	// (retry), not -32004 as if it did not exist.
	m.mu.RLock()
	var stopping []*supervisor
	restarting := map[string]*supervisor{}
	for name, s := range m.plugins {
		p, ok := want[name]
		switch {
		case !ok:
			stopping = append(stopping, s)
		case p.Hash != s.cfg.Hash || s.currentState() == StateFailed:
			stopping = append(stopping, s)
			restarting[name] = s
		}
	}
	m.mu.RUnlock()
	var errs []error
	if err := m.stopAll(ctx, stopping); err != nil {
		errs = append(errs, err)
	}
	m.mu.Lock()
	for _, s := range stopping {
		if restarting[s.cfg.Name] != nil {
			s.setState(StateRestarting, "")
			continue
		}
		delete(m.plugins, s.cfg.Name)
		m.met.forget(s.cfg.Name)
		if err := m.closeState(s.cfg.Name); err != nil {
			errs = append(errs, err)
		}
	}
	var starting []config.Plugin
	for name, p := range want {
		if _, ok := m.plugins[name]; !ok || restarting[name] != nil {
			starting = append(starting, p)
		}
	}
	m.mu.Unlock()
	m.rebuild()
	// A removed plugin's prefixes are unowned from here on (a subscribe
	// to them is -32004): end the subscriptions it had authorized, before
	// a plugin started below may claim them again. A changed plugin, and
	// one that crashed, keep theirs.
	for _, s := range stopping {
		if restarting[s.cfg.Name] != nil {
			continue
		}
		if prefixes := s.lastManifest().GetPrefixes(); len(prefixes) > 0 {
			s.log.Info("plugin removed from the config: ending the subscriptions to its channels", "prefixes", prefixes)
			m.opts.Core.PluginRemoved(s.cfg.Name, prefixes)
		}
	}
	sort.Slice(starting, func(i, j int) bool { return starting[i].Name < starting[j].Name })

	// Start the new ones in parallel: each start is bounded by StartTimeout.
	type result struct {
		inst *instance
		err  error
	}
	results := make([]result, len(starting))
	var wg sync.WaitGroup
	for i, p := range starting {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].inst, results[i].err = m.startInstance(ctx, p)
		}()
	}
	wg.Wait()

	// Admit them one by one, in name order, checking claims as we go.
	var admitted []*supervisor
	for i, p := range starting {
		r := results[i]
		if r.err == nil {
			if err := m.conflicts(p, r.inst.manifest); err != nil {
				r.inst.kill()
				r.err = err
			}
		}
		s := newSupervisor(m, p)
		var ue *unavailableError
		if errors.As(r.err, &ue) && m.conflicts(p, ue.manifest) == nil {
			// Its prefixes are claimed (calls answer -32050) while it
			// starts again with backoff, as a plugin that exited does.
			s.manifest = ue.manifest
			m.mu.Lock()
			m.plugins[p.Name] = s
			m.mu.Unlock()
			s.log.Warn("plugin cannot start yet; retrying", "error", r.err)
			s.retry(r.err)
			continue
		}
		if r.err != nil {
			errs = append(errs, r.err)
			if !boot {
				if old := restarting[p.Name]; old != nil {
					// What it owned stays its own until a reload fixes it.
					s.manifest = old.lastManifest()
				}
				s.failed(r.err)
				m.mu.Lock()
				m.plugins[p.Name] = s
				m.mu.Unlock()
			}
			continue
		}
		m.mu.Lock()
		m.plugins[p.Name] = s
		m.mu.Unlock()
		s.run(r.inst)
		admitted = append(admitted, s)
		if old := restarting[p.Name]; old != nil {
			if dropped := missing(old.lastManifest().GetPrefixes(), r.inst.manifest.GetPrefixes()); len(dropped) > 0 {
				s.log.Info("the new version no longer claims these prefixes: ending the subscriptions to their channels", "prefixes", dropped)
				m.opts.Core.PrefixesDropped(p.Name, dropped)
			}
		}
	}
	m.rebuild() // failed plugins keep the claims of the version they replace
	err := errors.Join(errs...)
	if boot && err != nil {
		m.mu.Lock()
		for _, s := range admitted {
			delete(m.plugins, s.cfg.Name)
		}
		m.mu.Unlock()
		if serr := m.stopAll(context.Background(), admitted); serr != nil {
			m.log.Error("stopping plugins after a failed boot", "error", serr)
		}
		m.rebuild()
		return err
	}
	return err
}

// missing lists the entries of was that are not in is.
func missing(was, is []string) []string {
	var out []string
	for _, p := range was {
		if !slices.Contains(is, p) {
			out = append(out, p)
		}
	}
	return out
}

func (m *Manager) stopAll(ctx context.Context, ss []*supervisor) error {
	errs := make([]error, len(ss))
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.stop(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close drains and stops every plugin, in parallel, bounded by ctx.
func (m *Manager) Close(ctx context.Context) error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.closed = true
	m.mu.Lock()
	ss := make([]*supervisor, 0, len(m.plugins))
	for _, s := range m.plugins {
		ss = append(ss, s)
	}
	m.plugins = map[string]*supervisor{}
	m.mu.Unlock()
	err := m.stopAll(ctx, ss)
	m.rebuild()
	return errors.Join(err, m.closeState(""))
}

// conflicts reports a prefix or route that p's manifest shares with
// another plugin's (running, down, or failed with the claims of its last
// manifest).
func (m *Manager) conflicts(p config.Plugin, man *pluginpb.Manifest) error {
	m.mu.RLock()
	others := make(map[string]*pluginpb.Manifest, len(m.plugins))
	for name, s := range m.plugins {
		s.mu.Lock()
		others[name] = s.manifest
		s.mu.Unlock()
	}
	m.mu.RUnlock()
	return claimConflicts(p, man, others)
}

// claimConflicts reports what p's manifest claims that one of others (by
// plugin name; p's own name and nil manifests are skipped) claims too: a
// channel prefix, or an HTTP route that matches the same requests. Each
// problem is one error at p's command in the file, the way the config
// loader reports a key: `config.hcl:9:3: plugin.chat2.command: claims
// channel prefix "chat", which plugin "chat" claims too`.
func claimConflicts(p config.Plugin, man *pluginpb.Manifest, others map[string]*pluginpb.Manifest) error {
	var errs []error
	if err := checkExpiryKept(p.Name, man); err != nil {
		errs = append(errs, keyError(p, "command", strings.TrimPrefix(err.Error(), fmt.Sprintf("plugin %q: ", p.Name))))
	}
	names := make([]string, 0, len(others))
	for name, om := range others {
		if name != p.Name && om != nil {
			names = append(names, name)
		}
	}
	sort.Strings(names) // the same report for the same file
	owners := map[string]string{}
	for _, name := range names {
		for _, pre := range others[name].GetPrefixes() {
			if _, ok := owners[pre]; !ok {
				owners[pre] = name
			}
		}
	}
	seen := map[string]bool{}
	for _, pre := range man.GetPrefixes() {
		if msg := checkPrefix(pre); msg != "" {
			errs = append(errs, keyError(p, "command", msg))
		}
		if seen[pre] {
			continue
		}
		seen[pre] = true
		if owner, ok := owners[pre]; ok {
			errs = append(errs, keyError(p, "command", fmt.Sprintf("claims channel prefix %q, which plugin %q claims too", pre, owner)))
		}
	}
	// Routes: build the combined mux; ServeMux refuses (panics on) two
	// patterns that match the same requests.
	mux := http.NewServeMux()
	owner := map[string]string{}
	register := func(plugin, pattern string) error {
		if o, ok := owner[pattern]; ok {
			return keyError(p, "command", fmt.Sprintf("claims HTTP route %q, which plugin %q claims too", pattern, o))
		}
		owner[pattern] = plugin
		if problem := hostcheck.Register(mux, pattern); problem != "" {
			return keyError(p, "command", fmt.Sprintf("HTTP route %q: %s", pattern, problem))
		}
		return nil
	}
	for _, name := range names {
		for _, r := range others[name].GetRoutes() {
			_ = register(name, r.GetMethod()+" "+r.GetPattern())
		}
	}
	for _, r := range man.GetRoutes() {
		if err := register(p.Name, r.GetMethod()+" "+r.GetPattern()); err != nil {
			errs = append(errs, err)
			continue
		}
		// Herald's own paths are served before the plugins' routes: a
		// route on one would never be reached.
		if cp := coreCollision(r.GetMethod(), r.GetPattern()); cp != "" {
			errs = append(errs, keyError(p, "command", fmt.Sprintf("claims HTTP route %q, which collides with Herald's own %s", r.GetMethod()+" "+r.GetPattern(), cp)))
		}
	}
	return errors.Join(errs...)
}

// rebuild recomputes prefix owners and the route mux from the manifests of
// every plugin (a plugin that is down, restarting, or failed on a reload
// keeps the claims of its last manifest: its channels stay subscribed, its
// calls answer -32050 and its routes 503). A plugin that never started has
// no manifest and claims nothing.
func (m *Manager) rebuild() {
	m.mu.Lock()
	defer m.mu.Unlock()
	owners := map[string]string{}
	mux := http.NewServeMux()
	for name, s := range m.plugins {
		s.mu.Lock()
		man := s.manifest
		s.mu.Unlock()
		if man == nil {
			continue
		}
		for _, p := range man.GetPrefixes() {
			owners[p] = name
		}
		for _, r := range man.GetRoutes() {
			func() {
				defer func() {
					if rec := recover(); rec != nil { // conflicts() keeps this from happening
						m.log.Error("route not mounted", "plugin", name, "route", r.GetPattern(), "error", rec)
					}
				}()
				mux.Handle(r.GetMethod()+" "+r.GetPattern(), &routeHandler{m: m, sup: s, route: r})
			}()
		}
	}
	m.owners = owners
	m.routes.Store(mux)
}

// Owner returns the plugin that owns a "prefix:rest" channel.
func (m *Manager) Owner(channel string) (string, bool) {
	prefix, _, ok := strings.Cut(channel, ":")
	if !ok {
		return "", false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	p, ok := m.owners[prefix]
	return p, ok
}

// ownsPrefix reports whether a plugin (running, down or restarting) owns
// the channel prefix.
// openChannels is Options.OpenChannels.
func (m *Manager) openChannels() bool {
	return m.opts.OpenChannels == nil || m.opts.OpenChannels()
}

func (m *Manager) ownsPrefix(prefix string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.owners[prefix]
	return ok
}

// Status lists the plugins by name.
func (m *Manager) Status() []Status {
	m.mu.RLock()
	out := make([]Status, 0, len(m.plugins))
	for _, s := range m.plugins {
		out = append(out, s.status())
	}
	m.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Ready reports whether every configured plugin is running and answers its
// liveness pings (not unresponsive).
func (m *Manager) Ready() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, s := range m.plugins {
		if inst, st := s.running(); inst == nil || st == StateUnresponsive {
			return false
		}
	}
	return true
}

func (m *Manager) get(name string) *supervisor {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.plugins[name]
}
