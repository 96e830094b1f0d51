package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/sdk/client"
)

// runSub is a client like any other: it presents onNotificationReceived,
// and sdk/client keeps it connected, resuming after a lost connection.
func runSub(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sub", "-channel C [-token T] [-config FILE] [-url URL]", stdout, stderr)
	path := fs.String("config", "config.hcl", "config file (gives the URL from server.listen unless -url does; ignored when absent and not given)")
	urlFlag := fs.String("url", "", "herald's WebSocket URL (default: ws://<server.listen>/ws, wss:// with server.tls; without a config "+defaultWSURL+")")
	token := fs.String("token", "", "client token (see herald token)")
	channel := fs.String("channel", "", "channel(s) to subscribe, space-separated; required")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	url, tc, err := wsTarget(*path, flagGiven(fs, "config"), *urlFlag)
	if err != nil {
		return err
	}
	channels := strings.Fields(*channel)
	if len(channels) == 0 {
		fmt.Fprintln(stderr, "herald sub: -channel is required")
		fs.Usage()
		return errUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var mu sync.Mutex // stderr is written from the client's goroutines
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stderr, format+"\n", args...)
	}
	enc := json.NewEncoder(stdout)
	c, err := client.Dial(ctx, url, client.Options{
		Token:  *token,
		Client: client.Info{Name: "herald sub", Version: version},
		Dialer: wsDialer(tc),
		Local: client.Methods{
			"onNotificationReceived": client.OnNotifications(func(_ context.Context, ns []client.Notification) error {
				for _, n := range ns {
					if err := enc.Encode(n); err != nil {
						stop() // stdout is gone: nothing left to do
						return err
					}
				}
				return nil
			}),
		},
		OnState: func(s client.State, err error) {
			if s == client.Reconnecting && err != nil {
				say("reconnecting: %v", err)
			} else if s == client.Connected {
				say("connected")
			}
		},
		OnUnrecovered: func(chs []string) {
			say("not recovered, notifications were missed: %s", strings.Join(chs, " "))
		},
		OnUnsubscribed: func(us []client.Unsubscribed) {
			for _, u := range us {
				say("no longer subscribed to %s: %s", u.Channel, u.Reason)
			}
		},
		OnError: func(err error) { say("%v", err) },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	subs, err := c.Subscribe(ctx, channels...)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	b, _ := json.Marshal(map[string]any{"subscriptions": subs})
	say("subscribed: %s", b)
	<-ctx.Done()
	return nil
}

const defaultWSURL = "ws://127.0.0.1:7512/ws"

// wsTarget resolves the WebSocket URL: -url, else the config's
// server.listen (wss:// with server.tls, whose certificate the returned
// TLS config then trusts). A config that was not named and does not exist
// leaves the default, so `herald sub` works outside a checkout; one that
// was named must load.
func wsTarget(path string, named bool, url string) (string, *tls.Config, error) {
	if url != "" {
		return url, nil, nil
	}
	if _, err := os.Stat(path); err != nil && !named {
		return defaultWSURL, nil, nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return "", nil, fmt.Errorf("%w (or give -url)", err)
	}
	tc, err := hubTLS(cfg)
	if err != nil {
		return "", nil, err
	}
	_, ws := hubURLs(cfg)
	return ws, tc, nil
}

// flagGiven says whether the flag was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}
