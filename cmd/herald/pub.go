package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/sdk/client"
)

func runPub(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pub", "-channel C -event E -object JSON [-object-type T] [-config FILE] [-url URL] [-key KEY]", stdout, stderr)
	path := fs.String("config", "config.hcl", "config file (gives the URL and API key unless -url/-key do)")
	base := fs.String("url", "", "herald's HTTP base URL (default: http://<server.listen>, https:// with server.tls)")
	key := fs.String("key", "", "API key (default: the config's first auth.api_keys entry)")
	channel := fs.String("channel", "", "channel; required")
	event := fs.String("event", "", "event name, e.g. new; required")
	objectType := fs.String("object-type", "message", "object_type of the notification")
	object := fs.String("object", "{}", "the object, as JSON")
	idem := fs.String("idempotency-key", "", "Idempotency-Key header: a retry with the same key publishes nothing again")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *channel == "" || *event == "" {
		fmt.Fprintln(stderr, "herald pub: -channel and -event are required")
		fs.Usage()
		return errUsage
	}
	if !json.Valid([]byte(*object)) {
		return fmt.Errorf("-object is not valid JSON: %s", *object)
	}
	url, apiKey, hc, err := apiTarget(*path, *base, *key)
	if err != nil {
		return err
	}
	p := &client.Publisher{URL: url, APIKey: apiKey, HTTP: hc}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := p.PublishOnce(ctx, *idem, client.Publication{
		Channel: *channel, Event: *event, ObjectType: *objectType, Object: json.RawMessage(*object),
	})
	if err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) {
			return fmt.Errorf("POST %s/v1/publish: %d %s: %s", url, ae.Status, http.StatusText(ae.Status), ae.Body)
		}
		return err
	}
	return json.NewEncoder(stdout).Encode(map[string]any{"results": res})
}

// apiTarget resolves the HTTP API's base URL and key from flags and
// config, and the client that reaches it: one that trusts the config's
// server.tls certificate when the config was read.
func apiTarget(path, base, key string) (string, string, *http.Client, error) {
	var tc *tls.Config
	if base == "" || key == "" {
		cfg, err := config.Load(path)
		if err != nil {
			return "", "", nil, fmt.Errorf("%w (or give -url and -key)", err)
		}
		if base == "" {
			base, _ = hubURLs(cfg)
		}
		if key == "" && len(cfg.Auth.APIKeys) > 0 {
			key = cfg.Auth.APIKeys[0]
		}
		if tc, err = hubTLS(cfg); err != nil {
			return "", "", nil, err
		}
	}
	return strings.TrimRight(base, "/"), key, httpClient(tc), nil
}

func doAPI(client *http.Client, req *http.Request, key string) ([]byte, error) {
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read reply: %w", req.Method, req.URL, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL, resp.Status, strings.TrimSpace(string(out)))
	}
	return out, nil
}
