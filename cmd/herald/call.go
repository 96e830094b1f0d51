package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/heraldhq/herald/sdk/client"
)

// runCall calls `<plugin>.<method>` once and prints its JSON result. With
// -token it calls as that client, over a WebSocket like any client; without
// it, as a backend through POST /v1/plugins/{plugin}/{method} with the API key.
func runCall(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("call", "[-config FILE] [-token T | -key K] [-url URL] [-timeout D] plugin.method [JSON params]", stdout, stderr)
	path := fs.String("config", "config.hcl", "config file (gives server.listen and the first API key unless -url/-key do)")
	token := fs.String("token", "", "call as this client (a token from herald token); default: as a backend with the API key")
	key := fs.String("key", "", "API key for a backend call (default: the config's first auth.api_keys entry)")
	base := fs.String("url", "", "herald's HTTP base URL, e.g. http://127.0.0.1:7512 (default: http://<server.listen>, https:// with server.tls)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	rest := fs.Args()
	if len(rest) == 0 || len(rest) > 2 {
		fmt.Fprintln(stderr, "herald call: want plugin.method and at most one JSON argument (the params)")
		fs.Usage()
		return errUsage
	}
	method := rest[0]
	plugin, name, ok := strings.Cut(method, ".")
	if !ok || plugin == "" || name == "" {
		return fmt.Errorf("method %q: want plugin.method, e.g. chat.saveDraft", method)
	}
	params := json.RawMessage(`{}`)
	if len(rest) == 2 {
		params = json.RawMessage(rest[1])
		if !json.Valid(params) {
			return fmt.Errorf("params are not valid JSON: %s", rest[1])
		}
	}
	if *token != "" && *key != "" {
		return errors.New("give -token (call as a client) or -key (call as a backend), not both")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	var result json.RawMessage
	var err error
	if *token != "" {
		result, err = callAsClient(ctx, *path, flagGiven(fs, "config"), *base, *token, method, params)
	} else {
		result, err = callAsBackend(ctx, *path, *base, *key, plugin, name, params)
	}
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if json.Indent(&out, result, "", "  ") != nil {
		out.Reset()
		out.Write(result)
	}
	out.WriteByte('\n')
	_, err = stdout.Write(out.Bytes())
	return err
}

func callAsClient(ctx context.Context, path string, named bool, base, token, method string, params json.RawMessage) (json.RawMessage, error) {
	url := ""
	if base != "" {
		url = "ws" + strings.TrimPrefix(strings.TrimRight(base, "/"), "http") + "/ws"
	}
	url, tc, err := wsTarget(path, named, url)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(ctx, url, client.Options{
		Token:  token,
		Client: client.Info{Name: "herald call", Version: version},
		Dialer: wsDialer(tc),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	defer c.Close()
	var result json.RawMessage
	if err := c.Call(ctx, method, params, &result); err != nil {
		return nil, err
	}
	return result, nil
}

func callAsBackend(ctx context.Context, path, base, key, plugin, name string, params json.RawMessage) (json.RawMessage, error) {
	url, apiKey, hc, err := apiTarget(path, base, key)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/plugins/"+plugin+"/"+name, bytes.NewReader(params))
	if err != nil {
		return nil, err
	}
	return doAPI(hc, req, apiKey)
}
