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
	fs := newFlags("validate", "[-config FILE] [-plugins=false]", stderr)
	path := fs.String("config", "config.hcl", "config file")
	withPlugins := fs.Bool("plugins", true, "start each plugin in a dry run to check its command and config block")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitCode(1)
	}
	if *withPlugins && len(cfg.Plugins) > 0 {
		// Plugins log to herald's log as at serve; only their warnings and
		// errors matter here.
		log := hclog.New(&hclog.LoggerOptions{Name: "herald", Level: hclog.Warn, Output: stderr})
		m := pluginhost.New(pluginhost.Options{Logger: log})
		if err := m.CheckAll(context.Background(), cfg.Plugins); err != nil {
			fmt.Fprintln(stderr, err)
			return exitCode(1)
		}
	}
	fmt.Fprintf(stdout, "%s: valid (%d plugin(s), listen %s)\n", *path, len(cfg.Plugins), cfg.Server.Listen)
	return nil
}
