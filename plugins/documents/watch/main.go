// Command watch subscribes to a documents room and prints what arrives: the
// subscribe answer, then one JSON line per notification. It is the
// walk-through's client (plugins/documents/README.md):
//
//	go run ./plugins/documents/watch -token "$(bin/herald token -sub alice -ttl 1h)" \
//	    -index shop -collection items -filter '{"range":{"price":{"lt":10}}}' -users all
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/heraldhq/herald/sdk/client"
)

// printer is the local interface: every batch, one line per notification.
type printer struct{}

func (printer) OnNotificationReceived(_ context.Context, b client.Batch) error {
	for _, n := range b.Notifications {
		line, _ := json.Marshal(n)
		fmt.Println(string(line))
	}
	return nil
}

func main() {
	url := flag.String("url", "ws://127.0.0.1:7512/ws", "herald's WebSocket URL")
	token := flag.String("token", "", "client token (herald token -sub USER)")
	index := flag.String("index", "", "index to watch (required)")
	collection := flag.String("collection", "", "collection to watch (required)")
	filter := flag.String("filter", "{}", "Koncorde filter (JSON)")
	scope := flag.String("scope", "all", "all | in | out | none")
	state := flag.String("state", "done", "all | pending | done")
	users := flag.String("users", "none", "all | in | out | none")
	flag.Parse()
	if *index == "" || *collection == "" {
		fmt.Fprintln(os.Stderr, "watch: -index and -collection are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c, err := client.Dial(ctx, *url, client.Options{Token: *token, Local: printer{}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "watch:", err)
		os.Exit(1)
	}
	defer c.Close()
	var res json.RawMessage
	params := map[string]any{"index": *index, "collection": *collection, "body": json.RawMessage(*filter),
		"scope": *scope, "state": *state, "users": *users}
	if err := c.Call(ctx, "documents.subscribe", params, &res); err != nil {
		fmt.Fprintln(os.Stderr, "watch: documents.subscribe:", err)
		os.Exit(1)
	}
	fmt.Println("subscribed:", string(res))
	<-ctx.Done()
}
