package main

import (
	"fmt"
	"io"

	"github.com/heraldhq/herald/core/config"
)

func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", "[-config FILE]", stderr)
	path := fs.String("config", "config.hcl", "config file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitCode(1)
	}
	fmt.Fprintf(stdout, "%s: valid (%d plugin(s), listen %s)\n", *path, len(cfg.Plugins), cfg.Server.Listen)
	return nil
}
