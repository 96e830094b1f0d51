package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/heraldhq/herald/core/pluginhost"
)

func runPlugins(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("plugins", "[-config FILE] [-url URL] [-key KEY] [-json]", stdout, stderr)
	path := fs.String("config", "config.hcl", "config file (gives the URL and API key unless -url/-key do)")
	base := fs.String("url", "", "herald's HTTP base URL (default: http://<server.listen>, https:// with server.tls)")
	key := fs.String("key", "", "API key (default: the config's first auth.api_keys entry)")
	asJSON := fs.Bool("json", false, "print GET /v1/plugins as it is")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	url, apiKey, hc, err := apiTarget(*path, *base, *key)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodGet, url+"/v1/plugins", nil)
	if err != nil {
		return err
	}
	out, err := doAPI(hc, req, apiKey)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err = stdout.Write(out)
		return err
	}
	var list struct{ Plugins []pluginhost.Status }
	if err := json.Unmarshal(out, &list); err != nil {
		return fmt.Errorf("unexpected reply from %s/v1/plugins: %w", url, err)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	// LAST ERROR is why a plugin is down now; LAST EXIT how its previous
	// process ended, kept after it recovered.
	fmt.Fprintln(tw, "NAME\tSTATE\tVERSION\tPREFIXES\tRESTARTS\tPID\tLAST EXIT\tLAST ERROR")
	for _, p := range list.Plugins {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", p.Name, p.State, p.Version, strings.Join(p.Prefixes, ","), p.Restarts, p.PID,
			dash(p.LastExit), dash(p.LastError))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
