package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/server"
	"github.com/heraldhq/herald/core/state"
	"github.com/heraldhq/herald/core/state/boltstate"
)

// backend is what a node stands on besides itself: the broker (nil: the
// server's memory broker) and where the plugins' State lives.
type backend struct {
	broker broker.Broker
	state  pluginhost.StateOpener
	log    hclog.Logger
}

// openBackend opens what cfg names.
func openBackend(_ context.Context, cfg *config.Config, logger hclog.Logger) (*backend, error) {
	if cfg.Broker.Kind == "nats" {
		return nil, fmt.Errorf(`broker "nats": this build cannot join a cluster yet`)
	}
	return &backend{state: boltOpener{dir: cfg.Resolve(cfg.State.Dir), maxBytes: cfg.State.MaxBytes}, log: logger}, nil
}

func (b *backend) attach(context.Context, *server.Server) error { return nil }
func (b *backend) close()                                       {}

// boltOpener keeps each plugin's State in <dir>/<plugin>.db (one node).
type boltOpener struct {
	dir      string
	maxBytes int64
}

func (o boltOpener) OpenState(_ context.Context, plugin string) (state.Store, error) {
	if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return nil, fmt.Errorf("state.dir: %w", err)
	}
	return boltstate.Open(filepath.Join(o.dir, plugin+".db"), boltstate.Options{MaxBytes: o.maxBytes})
}
