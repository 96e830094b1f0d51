package main

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/sdk"
)

const (
	version     = "1.0.0"
	prefix      = "kb:"
	emitTimeout = 10 * time.Second
	stripes     = 64
)

// Notification types, as NucliaDB's NotificationType.
const (
	typeWritten   = "resource_written"
	typeProcessed = "resource_processed"
	typeIndexed   = "resource_indexed"
)

// config is the plugin's `config` block.
type config struct {
	// DataDir is where versions before sdk.State kept kb.db; optional.
	// When it is given and kb.db is still there, the plugin refuses to
	// start: that file's seqids would be handed out again. The state itself
	// is Herald's (its `state` block on one node, NATS in a cluster).
	DataDir string `mapstructure:"data_dir"`
	// IndexReplicas is how many resource_indexed make a seqid indexed.
	IndexReplicas int `mapstructure:"index_replicas"`
	// KeepOperations is how many of a KB's latest seqids kb.waitFor and the
	// checks of later reports remember.
	KeepOperations int `mapstructure:"keep_operations"`
	// MaxWaiters bounds the kb.waitFor calls one client connection may
	// have waiting; MaxBackendWaiters those of all backends together.
	MaxWaiters        int `mapstructure:"max_waiters"`
	MaxBackendWaiters int `mapstructure:"max_backend_waiters"`
	// MaxStreams bounds the notification streams open at once.
	MaxStreams int `mapstructure:"max_streams"`
}

func defaultConfig() config {
	return config{IndexReplicas: 2, KeepOperations: 100_000, MaxWaiters: 32, MaxBackendWaiters: 1024, MaxStreams: 10_000}
}

// Validate reports every bad key, each at its key. It also looks for an
// earlier version's kb.db in data_dir (in a dry run too: herald validate
// must refuse what serve would).
func (c *config) Validate() error {
	var errs []error
	for _, b := range []struct {
		key       string
		v, lo, hi int
	}{
		{"index_replicas", c.IndexReplicas, 1, 64},
		{"keep_operations", c.KeepOperations, 1, 100_000_000},
		{"max_waiters", c.MaxWaiters, 1, 1_000_000},
		{"max_backend_waiters", c.MaxBackendWaiters, 1, 1_000_000},
		{"max_streams", c.MaxStreams, 1, 1_000_000},
	} {
		if b.v < b.lo || b.v > b.hi {
			errs = append(errs, &sdk.ConfigError{Key: b.key, Message: fmt.Sprintf("must be from %d to %d, got %d", b.lo, b.hi, b.v)})
		}
	}
	// kb.db is where versions before the State kept the counters: starting
	// next to it would hand out its seqids again.
	if c.DataDir != "" {
		old := filepath.Join(c.DataDir, "kb.db")
		if _, err := os.Stat(old); err == nil {
			errs = append(errs, &sdk.ConfigError{Key: "data_dir", Message: fmt.Sprintf("%s is the seqid store of an earlier kb plugin, which this version does not read (it keeps seqids in Herald's plugin state): starting would hand out its seqids again; remove the file to start every KB from seqid 1", old)})
		}
	}
	return errors.Join(errs...)
}

// KB is the plugin.
type KB struct {
	cfg   config
	store *stateStore
	host  sdk.Host
	log   hclog.Logger

	// stateOf gives the plugin its State (sdk.StateOf; tests put a fake).
	stateOf func(sdk.Host) (sdk.State, error)

	// Reports to a KB made through this process are serialized by its
	// stripe, from taking the seqid to emitting the notification: they go
	// out in seqid order. Reports through other nodes are ordered only by
	// the seqid compare-and-set (README, "Cluster").
	seed    maphash.Seed
	stripes [stripes]sync.Mutex

	waiters *waiters
	streams streams

	// The watch of the state (watchState) and its end.
	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// New returns an unconfigured plugin.
func New() *KB { return &KB{seed: maphash.MakeSeed(), stateOf: sdk.StateOf} }

var (
	_ sdk.Configurer = (*KB)(nil)
	_ sdk.Authorizer = (*KB)(nil)
	_ sdk.Drainer    = (*KB)(nil)
)

func (k *KB) Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:     "kb",
		Version:  version,
		Prefixes: []string{"kb"},
		Methods: []sdk.Method{
			{Name: typeWritten, BackendOnly: true, Handler: retryable(k.resourceWritten)},
			{Name: typeProcessed, BackendOnly: true, Handler: retryable(k.resourceProcessed)},
			{Name: typeIndexed, BackendOnly: true, Handler: retryable(k.resourceIndexed)},
			// A wait may outlast limits.call_timeout, up to its own bound.
			{Name: "waitFor", Handler: retryable(k.waitFor), Timeout: maxWaitSeconds*time.Second + 5*time.Second},
			{Name: "stats", BackendOnly: true, Handler: k.stats},
		},
		Routes: []sdk.Route{
			{Method: http.MethodGet, Pattern: "/v1/kb/{kbid}/notifications", Auth: sdk.AuthAny, Handler: http.HandlerFunc(k.serveNotifications)},
		},
	}
}

// retryable answers a call that failed because the state could not be
// reached (in a cluster, NATS) with -32050, "retry later" (HTTP 503 for
// backends), rather than as an internal error: nothing of it was applied
// that a retry would repeat wrongly (a seqid taken is simply never used).
func retryable(h func(context.Context, *sdk.Call) (any, error)) func(context.Context, *sdk.Call) (any, error) {
	return func(ctx context.Context, c *sdk.Call) (any, error) {
		res, err := h(ctx, c)
		var coded *sdk.Error
		if err != nil && !errors.As(err, &coded) && errors.Is(err, sdk.ErrStateUnavailable) {
			return nil, sdk.Errorf(sdk.CodePluginUnavailable, "%v: retry later", err)
		}
		return res, err
	}
}

// Configure decodes the config block, takes the plugin's State and starts
// watching it.
func (k *KB) Configure(_ context.Context, h sdk.Host, raw sdk.Config) error {
	cfg := defaultConfig()
	if err := raw.Decode(&cfg); err != nil {
		return sdk.InvalidParams(err.Error(), nil)
	}
	if raw.DryRun() {
		return nil // herald validate: the config is checked; open nothing
	}
	st, err := k.stateOf(h)
	if err != nil {
		return fmt.Errorf("kb keeps its seqids in the plugin's state: %w", err)
	}
	k.cfg, k.store, k.host, k.log = cfg, newStateStore(st, cfg.KeepOperations), h, h.Logger()
	k.waiters = newWaiters(cfg.MaxWaiters, cfg.MaxBackendWaiters)
	k.streams.max = cfg.MaxStreams
	ctx, cancel := context.WithCancel(context.Background())
	k.stopWatch, k.watchDone = cancel, make(chan struct{})
	go k.watchState(ctx, st) // ends at Drain
	k.log.Info("kb state open", "index_replicas", cfg.IndexReplicas, "keep_operations", cfg.KeepOperations)
	return nil
}

// watchRetry is how long the watch of the state waits before it starts
// again after it failed.
const watchRetry = time.Second

// watchState wakes the waiters of every record that changes, whichever
// node's process changed it, until ctx ends. When changes may have been
// missed (a Reset, or the watch failed) every waiter reads its record
// again.
func (k *KB) watchState(ctx context.Context, st sdk.State) {
	defer close(k.watchDone)
	for {
		err := st.Watch(ctx, stateRoot, func(c sdk.Change) {
			if c.Reset {
				k.waiters.wakeAll()
				return
			}
			k.waiters.wake(c.Key)
		})
		if ctx.Err() != nil {
			return
		}
		k.log.Warn("the watch of the kb state ended; waiters read again, and it starts again", "error", err, "retry_in", watchRetry)
		k.waiters.wakeAll()
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchRetry):
		}
	}
}

// Drain refuses new reports once those in flight are done, and ends the
// watch.
func (k *KB) Drain(context.Context) error {
	if k.store == nil {
		return nil
	}
	for i := range k.stripes {
		k.stripes[i].Lock()
	}
	k.store.close()
	for i := range k.stripes {
		k.stripes[i].Unlock()
	}
	k.stopWatch()
	<-k.watchDone
	return nil
}

func (k *KB) stripe(kbid string) *sync.Mutex {
	return &k.stripes[maphash.String(k.seed, kbid)%stripes]
}

// mayRead says whether caller may read kbid: a backend, or a token whose
// `kbs` claim lists it (a list of KB ids, or one id as a string).
func mayRead(c sdk.Caller, kbid string) bool {
	if c.Backend {
		return true
	}
	switch v := c.Claims["kbs"].(type) {
	case string:
		return v == kbid
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok && s == kbid {
				return true
			}
		}
	}
	return false
}

func forbidden(c sdk.Caller, kbid string) error {
	if c.UserID == "" {
		return sdk.Forbidden(fmt.Sprintf("knowledge box %s needs a token whose kbs claim lists it, or an API key", kbid))
	}
	return sdk.Forbidden(fmt.Sprintf("user %s may not read knowledge box %s: its token's kbs claim does not list it", c.UserID, kbid))
}

// Authorize: kb:<kbid> for tokens whose kbs claim lists the KB.
func (k *KB) Authorize(_ context.Context, c sdk.Caller, channels []string) ([]sdk.Refusal, error) {
	var refused []sdk.Refusal
	for _, ch := range channels {
		kbid, ok := strings.CutPrefix(ch, prefix)
		switch {
		case !ok || !validKBID(kbid):
			r := sdk.Refuse(ch, "kb channels are kb:<kbid>; a kbid is "+kbidRule)
			r.Code = sdk.CodeInvalidParams // malformed, as chat's and timelines' are
			refused = append(refused, r)
		case !mayRead(c, kbid):
			refused = append(refused, sdk.Refuse(ch, sdk.AsError(forbidden(c, kbid)).Message))
		}
	}
	return refused, nil
}
