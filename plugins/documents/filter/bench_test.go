package filter_test

import (
	"encoding/json"
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
			if _, errs := e.RegisterMany(asBytes(filters)); errs != nil {
				b.Fatal(errs)
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

// BenchmarkRegister measures registering the standard mixed workload of
// 100,000 filters into an empty engine, with one Register call per filter
// and with one RegisterMany call. It reports wall ms per 100k filters,
// process CPU ms (all threads, GC workers included) and the GC's share of
// it, and retained heap bytes per filter. The machine may be shared: CPU
// time is the steadier figure.
func BenchmarkRegister(b *testing.B) {
	const n = 100000
	filters := asBytes(workload.Filters(n, 1))
	for _, mode := range []string{"Register", "RegisterMany"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			var retained uint64
			var cpu, gc time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				cpu0, gc0 := cpuTimes()
				b.StartTimer()
				e := filter.New(filter.Options{})
				if mode == "Register" {
					for _, f := range filters {
						if _, err := e.Register(f); err != nil {
							b.Fatal(err)
						}
					}
				} else if _, errs := e.RegisterMany(filters); errs != nil {
					b.Fatal(errs)
				}
				b.StopTimer()
				cpu1, gc1 := cpuTimes()
				cpu += cpu1 - cpu0
				gc += gc1 - gc0
				runtime.GC()
				runtime.ReadMemStats(&after)
				retained = after.HeapAlloc - before.HeapAlloc
				runtime.KeepAlive(e)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/100k")
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/100k")
			b.ReportMetric(float64(gc.Milliseconds())/float64(b.N), "gc-cpu-ms/100k")
			b.ReportMetric(float64(retained)/n, "bytes/filter")
		})
	}
}

func asBytes(raw []json.RawMessage) [][]byte {
	out := make([][]byte, len(raw))
	for i, r := range raw {
		out[i] = r
	}
	return out
}
