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

// watchHUP starts taking SIGHUP at once, before the server listens: a
// signal that arrived before anyone took it would kill herald.
func watchHUP() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// reloadServerOnHUP re-reads the config on each signal from hup until ctx
// ends and hands it to the server, which applies what can change at run
// time and names what needs a restart. The plugin host has its own SIGHUP
// watcher (plugins.go); both get every signal.
func reloadServerOnHUP(ctx context.Context, hup chan os.Signal, path string, srv *server.Server, logger hclog.Logger) {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			cfg, err := config.Load(path)
			if err != nil {
				logger.Error("reload: config rejected; keeping the running one", "error", err)
				continue
			}
			srv.Reload(cfg)
		}
	}
}
