package cluster

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkPresence measures one cluster-wide presence from one of three
// nodes on one NATS server, for a channel of 10,000 subscribers spread
// evenly over the nodes (each a distinct user: the worst case for the
// user list), and for a channel nobody is on (the floor: one request, two
// empty answers). wire-B/op and msgs/op are what the asking node received.
func BenchmarkPresence(b *testing.B) {
	for _, bc := range []struct {
		name        string
		subscribers int
		idLen       int
	}{
		{"empty", 0, 0},
		{"10k-subscribers/12B-ids", 10_000, 12},
		{"10k-subscribers/36B-ids", 10_000, 36},
	} {
		b.Run(bc.name, func(b *testing.B) {
			url := runNATS(b, nil).ClientURL()
			nodes := []*testNode{startNode(b, url, "a", nil), startNode(b, url, "b", nil), startNode(b, url, "c", nil)}
			waitMembers(b, nodes, "a", "b", "c")
			per, next := bc.subscribers/len(nodes), 0
			for i, n := range nodes {
				count := per
				if i == 0 {
					count += bc.subscribers - per*len(nodes)
				}
				users := make([]string, count)
				for j := range users {
					users[j] = fmt.Sprintf("%0*d", bc.idLen, next)
					next++
				}
				n.local.set("room", count, users...)
			}

			ctx := context.Background()
			before := nodes[0].nc.Stats()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				count, users, err := nodes[0].Presence(ctx, "room")
				if err != nil || count != bc.subscribers || len(users) != bc.subscribers {
					b.Fatalf("presence: %d, %d users, %v", count, len(users), err)
				}
			}
			b.StopTimer()
			after := nodes[0].nc.Stats()
			b.ReportMetric(float64(after.InBytes-before.InBytes)/float64(b.N), "wire-B/op")
			b.ReportMetric(float64(after.InMsgs-before.InMsgs)/float64(b.N), "msgs/op")
			require.Zero(b, nodes[0].Stats().PresenceIncomplete)
		})
	}
}
