package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/sdk"
)

const (
	version                = "1.0.0"
	defaultMaxEmitChannels = 64
	maxMaxEmitChannels     = 10_000
)

// config is the plugin's `config` block.
type config struct {
	// DataDir is where versions before sdk.State kept timelines.db;
	// optional. When it is given and timelines.db is still there, the
	// plugin refuses to start: it would forget that file's grants. The
	// state itself is Herald's (its `state` block on one node, NATS in a
	// cluster).
	DataDir string `mapstructure:"data_dir"`
	// MaxEmitChannels bounds the channels of one emit call.
	MaxEmitChannels int `mapstructure:"max_emit_channels"`
}

// Validate reports every bad key, each at its key. It also looks for an
// earlier version's timelines.db in data_dir (in a dry run too: herald
// validate must refuse what serve would).
func (c *config) Validate() error {
	var errs []error
	if c.MaxEmitChannels < 1 || c.MaxEmitChannels > maxMaxEmitChannels {
		errs = append(errs, &sdk.ConfigError{Key: "max_emit_channels", Message: fmt.Sprintf("must be from 1 to %d, got %d", maxMaxEmitChannels, c.MaxEmitChannels)})
	}
	// timelines.db is where versions before the State kept the grants:
	// starting next to it would silently forget them.
	if c.DataDir != "" {
		old := filepath.Join(c.DataDir, "timelines.db")
		if _, err := os.Stat(old); err == nil {
			errs = append(errs, &sdk.ConfigError{Key: "data_dir", Message: fmt.Sprintf("%s holds the grants of an earlier timelines plugin, which this version does not read (it keeps them in Herald's plugin state): starting would forget them; record them again with grant and remove the file", old)})
		}
	}
	return errors.Join(errs...)
}

// Timelines is the plugin. Grants live in the plugin's State, shared by its
// processes on every node; which connection holds which channel lives in
// memory, per node, learnt from the host's lifecycle events (replayed after
// a restart).
type Timelines struct {
	cfg    config
	grants *stateGrants
	host   sdk.Host
	log    hclog.Logger

	// stateOf gives the plugin its State (sdk.StateOf; tests may put a fake).
	stateOf func(sdk.Host) (sdk.State, error)

	mu    sync.Mutex
	conns map[string]*conn // by connection id
	// revoking counts the revokes in flight in this process by the key of
	// their grant: the watch leaves their deletions to them, as they count
	// what they drop.
	revoking map[string]int

	// The watch of the grants (watchGrants) and its end.
	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// conn is one live connection: its identity at subscribe time and the
// timelines channels it holds.
type conn struct {
	user   string
	claims map[string]any
	subs   map[string]struct{}
}

var (
	_ sdk.Plugin       = (*Timelines)(nil)
	_ sdk.Configurer   = (*Timelines)(nil)
	_ sdk.Authorizer   = (*Timelines)(nil)
	_ sdk.EventHandler = (*Timelines)(nil)
	_ sdk.Drainer      = (*Timelines)(nil)
	_ sdk.ExpiryKeeper = (*Timelines)(nil)
)

// New returns an unconfigured plugin.
func New() *Timelines {
	return &Timelines{conns: map[string]*conn{}, revoking: map[string]int{}, stateOf: sdk.StateOf}
}

func (p *Timelines) Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:     "timelines",
		Version:  version,
		Prefixes: prefixes(),
		Methods: []sdk.Method{
			{Name: "emit", BackendOnly: true, Handler: p.emit},
			{Name: "grant", BackendOnly: true, Handler: p.grant},
			{Name: "revoke", BackendOnly: true, Handler: p.revoke},
		},
	}
}

// ExpiryKeptPrefixes keeps every timelines subscription across token
// expiry: the source checks the token at subscribe time only.
func (p *Timelines) ExpiryKeptPrefixes() []string { return prefixes() }

// Configure decodes the config block, takes the plugin's State and starts
// watching the grants.
func (p *Timelines) Configure(_ context.Context, h sdk.Host, raw sdk.Config) error {
	cfg := config{MaxEmitChannels: defaultMaxEmitChannels}
	if err := raw.Decode(&cfg); err != nil {
		return sdk.InvalidParams(err.Error(), nil)
	}
	if raw.DryRun() {
		return nil // herald validate: the config is checked; open nothing
	}
	st, err := p.stateOf(h)
	if err != nil {
		return fmt.Errorf("timelines keeps its grants in the plugin's state: %w", err)
	}
	p.cfg, p.grants, p.host, p.log = cfg, &stateGrants{st: st}, h, h.Logger()
	ctx, cancel := context.WithCancel(context.Background())
	p.stopWatch, p.watchDone = cancel, make(chan struct{})
	go p.watchGrants(ctx, st) // ends at Drain
	p.log.Info("timelines grants open", "max_emit_channels", cfg.MaxEmitChannels)
	return nil
}

// Drain ends the watch of the grants; calls that still come are answered
// with an error, never with a stale answer.
func (p *Timelines) Drain(context.Context) error {
	if p.grants == nil {
		return nil
	}
	p.grants.closed.Store(true)
	p.stopWatch()
	<-p.watchDone
	return nil
}
