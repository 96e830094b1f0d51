package filter_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/heraldhq/herald/plugins/documents/filter"
	"github.com/heraldhq/herald/plugins/documents/filter/workload"
)

// BenchmarkMatch measures matching over the standard mixed workload at
// 1k, 10k and 100k filters; it reports documents/s, matches/document,
// registration time and bytes per filter.
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("filters=%d", n), func(b *testing.B) {
			filters := workload.Filters(n, 1)
			raw := workload.Documents(1000, 2)
			docs := make([]*filter.Document, len(raw))
			for i, r := range raw {
				d, err := filter.ParseDocument(r)
				if err != nil {
					b.Fatal(err)
				}
				docs[i] = d
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			e := filter.New(filter.Options{})
			start := time.Now()
			for _, f := range filters {
				if _, err := e.Register(f); err != nil {
					b.Fatal(err)
				}
			}
			reg := time.Since(start)
			runtime.GC()
			runtime.ReadMemStats(&after)
			matches := 0
			for _, d := range docs {
				matches += len(e.MatchDocument(d))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.MatchDocument(docs[i%len(docs)])
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
			b.ReportMetric(float64(matches)/float64(len(docs)), "matches/doc")
			b.ReportMetric(float64(reg.Milliseconds()), "register-ms")
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/filter")
			runtime.KeepAlive(e)
		})
	}
}
