package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	// DataDir holds timelines.db (the backend's grants and roles); required.
	DataDir string `mapstructure:"data_dir"`
	// MaxEmitChannels bounds the channels of one emit call.
	MaxEmitChannels int `mapstructure:"max_emit_channels"`
}

func (c *config) Validate() error {
	if strings.TrimSpace(c.DataDir) == "" {
		return errors.New("data_dir is required (the directory that keeps timelines.db)")
	}
	if c.MaxEmitChannels < 1 || c.MaxEmitChannels > maxMaxEmitChannels {
		return fmt.Errorf("max_emit_channels must be from 1 to %d, got %d", maxMaxEmitChannels, c.MaxEmitChannels)
	}
	return nil
}

// Timelines is the plugin. Grants live in the store; which connection holds
// which channel lives in memory, learnt from the host's lifecycle events
// (replayed after a restart).
type Timelines struct {
	cfg    config
	grants grants
	log    hclog.Logger

	mu    sync.Mutex
	conns map[string]*conn // by connection id
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
func New() *Timelines { return &Timelines{conns: map[string]*conn{}} }

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

// Configure decodes the config block and opens the grants.
func (p *Timelines) Configure(_ context.Context, h sdk.Host, raw sdk.Config) error {
	cfg := config{MaxEmitChannels: defaultMaxEmitChannels}
	if err := raw.Decode(&cfg); err != nil {
		return sdk.InvalidParams(err.Error(), nil)
	}
	if raw.DryRun() {
		return nil // herald validate: the config is checked; open nothing
	}
	g, err := openBoltGrants(cfg.DataDir)
	if err != nil {
		return err
	}
	p.cfg, p.grants, p.log = cfg, g, h.Logger()
	p.log.Info("timelines grants opened", "dir", cfg.DataDir, "max_emit_channels", cfg.MaxEmitChannels)
	return nil
}

// Drain closes the grants; calls that still come are answered with an
// error, never with a stale answer.
func (p *Timelines) Drain(context.Context) error {
	if p.grants == nil {
		return nil
	}
	return p.grants.Close()
}
