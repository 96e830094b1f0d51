package main

import (
	"context"
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
)

// runValidate loads the config and then starts each plugin in a dry run
// (handshake, manifest, Configure with dry_run: the plugin checks its config
// block and opens nothing) and checks their claims against each other, so
// that a missing binary, a typo in a plugin's config or two plugins claiming
// one channel prefix fail here rather than at serve.
func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", "[-config FILE] [-plugins=false]", stdout, stderr)
	path := fs.String("config", "config.hcl", "config file")
	withPlugins := fs.Bool("plugins", true, "start each plugin in a dry run to check its command and config block")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// Every problem at once: the core's, then those of each plugin block
	// that decoded (its dry run), even when the core's keys have errors.
	cfg, err := config.LoadPartial(*path)
	failed := err != nil
	if err != nil {
		fmt.Fprintln(stderr, err)
	}
	if cfg != nil && *withPlugins && len(cfg.Plugins) > 0 {
		// The host's own log is not a finding (a plugin slow to exit, a
		// plugin that calls itself by another name): only errors, which
		// plugins log when they refuse to start, are shown.
		log := hclog.New(&hclog.LoggerOptions{Name: "herald", Level: hclog.Error, Output: stderr})
		m := pluginhost.New(pluginhost.Options{Logger: log})
		if err := m.CheckAll(context.Background(), cfg.Plugins); err != nil {
			fmt.Fprintln(stderr, err)
			failed = true
		}
	}
	if failed {
		return exitCode(1)
	}
	fmt.Fprintf(stdout, "%s: valid (%d plugin(s), listen %s)\n", *path, len(cfg.Plugins), cfg.Server.Listen)
	return nil
}
