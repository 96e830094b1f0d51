package natsbroker_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/broker/natsbroker"
	"github.com/heraldhq/herald/internal/natstest"
)

var benchObject = json.RawMessage(`{"id":8,"user_id":72,"group_id":2,"serial":8,"text":"hello world ;)"}`)

// BenchmarkPublish is one notification published to one of many channels
// by one node: one JetStream publish round trip each (R1, one server,
// loopback), the channel's position known from its last publication.
func BenchmarkPublish(b *testing.B) {
	srv := natstest.Start(b)
	br := newBroker(b, srv.URL(), uniqueOptions(100, time.Hour))
	names := make([]string, 1000)
	for i := range names {
		names[i] = "user:" + strconv.Itoa(i)
	}
	ctx := context.Background()
	ns := make([]broker.Notification, 1)
	// Each channel's first publication also starts its run (a run record
	// and the reads before it): not what is measured here.
	for _, name := range names {
		ns[0] = broker.Notification{Channel: name, Event: "new", ObjectType: "message", Object: benchObject}
		if _, err := br.Publish(ctx, ns); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		ns[0] = broker.Notification{Channel: names[i%len(names)], Event: "new", ObjectType: "message", Object: benchObject}
		if _, err := br.Publish(ctx, ns); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPublishContended is two nodes publishing to one channel at
// once, two publishers each: every publish that loses the race for the
// next seq reads the channel again and retries. conflicts/op is how many
// retries a publish needed on average.
func BenchmarkPublishContended(b *testing.B) {
	srv := natstest.Start(b)
	opts := uniqueOptions(100, time.Hour)
	nodes := []*natsbroker.Broker{newBroker(b, srv.URL(), opts), newBroker(b, srv.URL(), opts)}
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(2) // 2 x GOMAXPROCS publishers
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		node := nodes[next.Add(1)%2]
		ns := []broker.Notification{{Channel: "hot", Event: "new", ObjectType: "message", Object: benchObject}}
		for pb.Next() {
			if _, err := node.Publish(ctx, ns); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	conflicts := nodes[0].Stats().Conflicts + nodes[1].Stats().Conflicts
	b.ReportMetric(float64(conflicts)/float64(b.N), "conflicts/op")
}

type arrivals chan time.Time

func (a arrivals) HandlePublication(*broker.Publication) { a <- time.Now() }

// BenchmarkWatchToDelivery is the time from a Publish on one node to the
// Handler call on another that watches the channel (stored, republished,
// routed to the watcher): one publication at a time, so it is latency,
// not throughput. p50 and p99 are reported.
func BenchmarkWatchToDelivery(b *testing.B) {
	srv := natstest.Start(b)
	opts := uniqueOptions(100, time.Hour)
	pub, sub := newBroker(b, srv.URL(), opts), newBroker(b, srv.URL(), opts)
	got := make(arrivals, 1)
	sub.SetHandler(got)
	sub.Watch("room")
	ctx := context.Background()
	if _, err := sub.Position(ctx, "room"); err != nil {
		b.Fatal(err)
	}
	ns := []broker.Notification{{Channel: "room", Event: "new", ObjectType: "message", Object: benchObject}}
	var lat []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := pub.Publish(ctx, ns); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-got).Sub(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
