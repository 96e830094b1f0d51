package transport_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/transport"
)

// histogramObserver observes as the server's metrics do: a Prometheus
// histogram per delivered write.
type histogramObserver struct{ h prometheus.Histogram }

func (histogramObserver) SlowConsumer(transport.SlowReason) {}
func (o histogramObserver) Sent(s *transport.Sent) {
	for _, d := range s.Latencies {
		o.h.Observe(d.Seconds())
	}
}

// BenchmarkOutboxObserved is BenchmarkOutbox with delivery latency
// measured (publications with an accept time, an Observer with a
// histogram): compare the two for what the measurement costs.
func BenchmarkOutboxObserved(b *testing.B) {
	for _, conns := range []int{1, 100, 1000} {
		for _, mode := range []string{"flood", "round"} {
			b.Run(fmt.Sprintf("%s/conns=%d", mode, conns), func(b *testing.B) {
				obs := histogramObserver{prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bench", Buckets: prometheus.DefBuckets})}
				opts := &transport.Options{MaxBatch: 128, MaxDelay: 2 * time.Millisecond, OutboxLimit: 1 << 20, WriteTimeout: 10 * time.Second, Observer: obs}
				round := mode == "round"
				if round {
					opts.MaxDelay = 0
				}
				p := newPairs(b, conns, opts)
				defer p.close()
				pubs := make([]*broker.Publication, 64)
				for i := range pubs {
					pubs[i] = publication(uint64(i + 1))
					pubs[i].Accepted = time.Now()
				}
				b.ReportAllocs()
				b.ResetTimer()
				n := 0
				for b.Loop() {
					pub := pubs[n%len(pubs)]
					for _, c := range p.conns {
						c.Deliver(pub)
					}
					n++
					switch {
					case round:
						p.waitFor(b, int64(n*conns))
					case n%1024 == 0:
						p.waitFor(b, int64((n-512)*conns))
					}
				}
				p.waitFor(b, int64(n*conns))
				b.StopTimer()
				b.ReportMetric(float64(n*conns)/b.Elapsed().Seconds(), "deliveries/s")
				if frames := p.frames.Load(); frames > 0 {
					b.ReportMetric(float64(p.notifs.Load())/float64(frames), "notifs/frame")
				}
			})
		}
	}
}
