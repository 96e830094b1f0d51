package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/heraldhq/herald/core/auth"
	"github.com/heraldhq/herald/core/config"
)

// claimFlags collects repeated -claim k=v flags.
type claimFlags map[string]any

func (c claimFlags) String() string { return "" }

// Set takes k=v; v is read as JSON when it is JSON (numbers, booleans,
// arrays, objects, quoted strings) and as a plain string otherwise.
func (c claimFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want key=value")
	}
	// The token's own claims come from their flags: a -claim for one
	// would be overwritten, or overwrite what the flag said.
	switch k {
	case "sub":
		return errors.New("sub is the user id: use -sub")
	case "exp", "iat":
		return fmt.Errorf("%s is set from the time to live: use -ttl", k)
	}
	var parsed any
	if err := json.Unmarshal([]byte(v), &parsed); err == nil {
		c[k] = parsed
	} else {
		c[k] = v
	}
	return nil
}

func runToken(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", "-sub USER [-ttl 1h] [-claim k=v ...] [-config FILE]", stdout, stderr)
	path := fs.String("config", "config.hcl", "config file (its auth.token_secret signs the token)")
	sub := fs.String("sub", "", "user id (the sub claim); required")
	ttl := fs.Duration("ttl", time.Hour, "time to live (sets exp); 0 for a token that never expires")
	claims := claimFlags{}
	fs.Var(claims, "claim", "extra claim k=v (repeatable; v may be JSON, e.g. -claim 'networks=[\"n1\"]'); not sub, exp or iat, which -sub and -ttl set")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *sub == "" {
		fmt.Fprintln(stderr, "herald token: -sub is required")
		fs.Usage()
		return errUsage
	}
	if *ttl < 0 {
		fmt.Fprintf(stderr, "herald token: -ttl %s is negative: give a positive time to live, or 0 for a token that never expires\n", *ttl)
		fs.Usage()
		return errUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	tok, err := auth.NewTokens(cfg.Auth.TokenSecret).Mint(*sub, *ttl, claims)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
