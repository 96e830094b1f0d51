package main

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/server"
)

// pluginRuntime owns the plugin host of a serving herald.
type pluginRuntime struct {
	log     hclog.Logger
	manager *pluginhost.Manager
}

// startPlugins starts every configured plugin and connects the host to the
// server. A plugin that cannot start stops the boot with an error naming it.
func startPlugins(ctx context.Context, cfg *config.Config, logger hclog.Logger, srv *server.Server, states pluginhost.StateOpener) (*pluginRuntime, error) {
	m := pluginhost.New(pluginhost.Options{
		Logger:     logger,
		Core:       srv,
		Registerer: srv.Registerer(),
		// One bound for every exchange with a plugin: calls, authorization,
		// client calls, and each delivery of lifecycle events (which are
		// retried for as long again before a resync).
		CallTimeout: cfg.Limits.CallTimeout,
		// Streamed plugin routes write to HTTP clients as the WebSocket
		// transport does, with the same bound per write.
		WriteTimeout:      cfg.Delivery.WriteTimeout,
		State:             states,
		LogLinesPerSecond: cfg.Log.PluginLinesPerSecond,
		OpenChannels:      srv.OpenChannels,
	})
	srv.SetPlugins(m)
	if err := m.Apply(ctx, cfg.Plugins); err != nil {
		closeCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = m.Close(closeCtx)
		return nil, err
	}
	return &pluginRuntime{log: logger, manager: m}, nil
}

// close stops every plugin, draining them first.
func (p *pluginRuntime) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.manager.Close(ctx); err != nil {
		p.log.Error("stopping plugins", "error", err)
	}
}
