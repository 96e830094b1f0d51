package main

import (
	"context"
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
	fs := newFlags("pub", "-channel C -event E -object JSON [-object-type T] [-config FILE] [-url URL] [-key KEY]", stderr)
	path := fs.String("config", "config.hcl", "config file (gives the URL and API key unless -url/-key do)")
	base := fs.String("url", "", "herald's HTTP base URL (default: http://<server.listen>)")
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
	url, apiKey, err := apiTarget(*path, *base, *key)
	if err != nil {
		return err
	}
	p := &client.Publisher{URL: url, APIKey: apiKey}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := p.PublishOnce(ctx, *idem, client.Publication{
		Channel: *channel, Event: *event, ObjectType: *objectType, Object: json.RawMessage(*object),
	})
	if err != nil {
		return apiErr(url+"/v1/publish", err)
	}
	return json.NewEncoder(stdout).Encode(map[string]any{"results": res})
}

func runPlugins(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("plugins", "[-config FILE] [-url URL] [-key KEY]", stderr)
	path := fs.String("config", "config.hcl", "config file (gives the URL and API key unless -url/-key do)")
	base := fs.String("url", "", "herald's HTTP base URL (default: http://<server.listen>)")
	key := fs.String("key", "", "API key (default: the config's first auth.api_keys entry)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	url, apiKey, err := apiTarget(*path, *base, *key)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := (&client.Publisher{URL: url, APIKey: apiKey}).Do(ctx, http.MethodGet, "/v1/plugins", nil, nil)
	if err != nil {
		return apiErr(url+"/v1/plugins", err)
	}
	_, err = stdout.Write(out)
	return err
}

// apiTarget resolves the HTTP API's base URL and key from flags and config.
func apiTarget(path, base, key string) (string, string, error) {
	if base == "" || key == "" {
		cfg, err := config.Load(path)
		if err != nil {
			return "", "", fmt.Errorf("%w (or give -url and -key)", err)
		}
		if base == "" {
			base = "http://" + cfg.Server.Listen
		}
		if key == "" && len(cfg.Auth.APIKeys) > 0 {
			key = cfg.Auth.APIKeys[0]
		}
	}
	return strings.TrimRight(base, "/"), key, nil
}

// apiErr names the endpoint in an HTTP API error.
func apiErr(endpoint string, err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return fmt.Errorf("%s: %d %s: %s", endpoint, ae.Status, http.StatusText(ae.Status), ae.Body)
	}
	return err
}
