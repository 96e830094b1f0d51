package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" // served only on the -pprof address
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/server"
	"github.com/heraldhq/herald/internal/logtext"
	"github.com/heraldhq/herald/internal/rlimit"
)

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "[-config FILE] [-listen ADDR] [-pprof ADDR]", stdout, stderr)
	path := fs.String("config", "config.hcl", "config file")
	listen := fs.String("listen", "", "listen address, overriding server.listen")
	pprofAddr := fs.String("pprof", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060; off when empty")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Server.Listen = *listen
	}
	logger := newLogger(cfg, stderr)
	if limit, err := rlimit.RaiseOpenFiles(); err != nil {
		logger.Warn("open-file limit not raised", "error", err)
	} else {
		logger.Debug("open-file limit", "files", limit)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	back, err := openBackend(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer back.close() // after the server closed its broker
	srv, err := server.New(server.Options{Config: cfg, Logger: logger, Version: version, Broker: back.broker})
	if err != nil {
		return err
	}
	if err := back.attach(ctx, srv); err != nil {
		return err
	}
	hup := watchHUP()
	plugins, err := startPlugins(ctx, cfg, logger, srv, back.state)
	if err != nil {
		return err
	}
	defer plugins.close() // on an early return; a no-op after the shutdown below
	// At shutdown the plugins stop (drain, then stop) after the clients and
	// before the broker closes, so that what they emit while draining is kept.
	srv.BeforeBrokerClose(func(context.Context) error { plugins.close(); return nil })
	reloads := &reloader{path: *path, listen: *listen, srv: srv, plugins: plugins, log: logger}
	go reloads.run(ctx, hup)

	if *pprofAddr != "" {
		pl, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			return fmt.Errorf("pprof listen: %w", err)
		}
		logger.Info("pprof listening", "addr", pl.Addr().String())
		go func() { _ = http.Serve(pl, http.DefaultServeMux) }()
	}

	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (server.listen): %w", cfg.Server.Listen, err)
	}
	if err := srv.Serve(ctx, ln); err != nil {
		logger.Error("shutdown", "error", err)
		return err
	}
	logger.Info("stopped")
	return nil
}

// newLogger builds herald's logger. It takes sinks (an InterceptLogger):
// the admin page keeps the recent warnings and errors from one. Durations
// are written as text in JSON too ("backoff":"200ms").
func newLogger(cfg *config.Config, w io.Writer) hclog.Logger {
	return logtext.NewIntercept(&hclog.LoggerOptions{
		Name:       "herald",
		Level:      hclog.LevelFromString(cfg.Log.Level),
		JSONFormat: cfg.Log.Format == "json",
		Output:     w,
	})
}
