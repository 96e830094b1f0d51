package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/heraldhq/herald/sdk/client"
)

// runSub is a client like any other: it presents onNotificationReceived,
// and sdk/client keeps it connected, resuming after a lost connection.
func runSub(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sub", "-channel C [-url URL] [-token T]", stderr)
	url := fs.String("url", "ws://127.0.0.1:7512/ws", "herald's WebSocket URL")
	token := fs.String("token", "", "client token (see herald token)")
	channel := fs.String("channel", "", "channel(s) to subscribe, space-separated; required")
	if err := parseFlags(fs, args); err != nil {
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
	c, err := client.Dial(ctx, *url, client.Options{
		Token:  *token,
		Client: client.Info{Name: "herald sub", Version: version},
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
