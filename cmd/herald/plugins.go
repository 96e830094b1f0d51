package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/server"
)

// pluginRuntime owns the plugin host of a serving herald.
type pluginRuntime struct {
	log hclog.Logger
}

func startPlugins(ctx context.Context, cfg *config.Config, logger hclog.Logger, srv *server.Server) (*pluginRuntime, error) {
	for _, p := range cfg.Plugins {
		logger.Warn("plugin support is not built yet; ignoring plugin block", "plugin", p.Name)
	}
	return &pluginRuntime{log: logger}, nil
}

// reloadOnHUP re-reads the config on SIGHUP until ctx ends. Herald must not
// die of SIGHUP, whatever the config says.
func (p *pluginRuntime) reloadOnHUP(ctx context.Context, path string) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if _, err := config.Load(path); err != nil {
				p.log.Error("reload: config rejected; keeping the running one", "error", err)
				continue
			}
			p.log.Info("reload: config re-read")
		}
	}
}

func (p *pluginRuntime) close() {}
