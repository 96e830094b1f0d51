package cluster_test

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/core/cluster"
)

// local adapts what a server knows about itself: its hub's presence of a
// channel and its own overload state (with its hysteresis).
type local struct {
	presence func(channel string) (int, []string)
	busy     atomic.Bool
}

func (l *local) Presence(channel string) (int, []string) { return l.presence(channel) }
func (l *local) Busy() bool                              { return l.busy.Load() }

func ExampleNew() {
	ctx := context.Background()
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close() // after node.Close: the caller owns the connection

	node, err := cluster.New(ctx, nc, cluster.Options{
		Local: &local{presence: func(string) (int, []string) { return 0, nil }},
		OnFlip: func(ctx context.Context, busy bool) error {
			// Called on one node of the cluster per flip: publish
			// servers_busy or servers_normal on the config channel here,
			// and return the publish's error so that a failed one is
			// offered again.
			return nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()

	count, users, err := node.Presence(ctx, "chat:group:2")
	fmt.Println(count, users, err, node.Busy(), node.Nodes())
}
