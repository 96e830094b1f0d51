package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strings"
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

// reloader applies the config file on each SIGHUP: it reads the file once,
// checks all of it (the core's keys, then every added or changed plugin in
// a dry run and their claims, the latter even when the former fail), and only then hands that one config to the
// server (what can change at run time) and to the plugin host (plugins
// added, removed or restarted). A file that fails any check is logged,
// one line per problem as `herald validate` prints them, and the running
// config stays whole: no setting changes and no plugin is touched.
type reloader struct {
	path    string
	listen  string // -listen, which overrides server.listen on every read
	srv     *server.Server
	plugins *pluginRuntime
	log     hclog.Logger
}

// run takes the signals from hup until ctx ends. Herald must not die of
// SIGHUP, whatever the file says.
func (r *reloader) run(ctx context.Context, hup chan os.Signal) {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload(ctx)
		}
	}
}

func (r *reloader) reload(ctx context.Context) {
	// Every problem at once, as herald validate reports them: the core's,
	// then those of each plugin block that decoded (its dry run), even
	// when the core's keys have errors.
	cfg, err := config.LoadPartial(r.path)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if cfg != nil {
		if perr := r.plugins.manager.Preflight(ctx, cfg.Plugins); perr != nil {
			errs = append(errs, perr)
		}
	}
	if len(errs) > 0 {
		r.reject(errors.Join(errs...))
		return
	}
	if r.listen != "" {
		cfg.Server.Listen = r.listen
	}
	r.log.Info("reload: config re-read", "plugins", len(cfg.Plugins))
	r.srv.Reload(cfg)
	if err := r.plugins.manager.Apply(ctx, cfg.Plugins); err != nil {
		r.log.Error("reload: some plugins failed", "error", err)
		return
	}
	r.log.Info("reload: plugins applied")
}

// reject logs each problem of a file that is not applied on its own line.
func (r *reloader) reject(err error) {
	for _, problem := range problems(err) {
		r.log.Error("reload: config rejected; keeping the running one", "error", problem)
	}
}

// problems splits an error that lists several problems (config
// Diagnostics, errors.Join of plugin errors: each problem is one line)
// into its lines.
func problems(err error) []string {
	var out []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}
