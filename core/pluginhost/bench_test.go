package pluginhost_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
)

// emitWorkers is how many goroutines of the plugin emit at once.
var emitWorkers = 512

// BenchmarkEmit measures the event path across the process boundary: the
// tester plugin emits b.N small notifications, one per Emit call, from
// emitWorkers goroutines at once, so the SDK batches them on its one stream;
// the host's recording Core acknowledges each batch. Reported: notifications/s.
func BenchmarkEmit(b *testing.B) {
	core := newRecorder()
	core.keep = false
	m := newManager(b, core, nil)
	if err := m.Apply(bg, []config.Plugin{block(b, "tester", "tester", nil)}); err != nil {
		b.Fatal(err)
	}
	params := json.RawMessage(fmt.Sprintf(`{"channel":"tester:b","count":%d,"workers":%d}`, b.N, emitWorkers))
	b.ResetTimer()
	start := time.Now()
	if _, err := m.Call(bg, "tester", "flood", pluginhost.Caller{Backend: true}, params); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	if core.count != b.N {
		b.Fatalf("recorded %d of %d", core.count, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "notifications/s")
}

// BenchmarkAuthorize measures one Authorize round trip (host -> plugin ->
// host) for one channel. Reported: p50 and p99 in microseconds.
func BenchmarkAuthorize(b *testing.B) {
	m := newManager(b, newRecorder(), nil)
	if err := m.Apply(bg, []config.Plugin{block(b, "echo", "echo", nil)}); err != nil {
		b.Fatal(err)
	}
	caller := pluginhost.Caller{ConnID: "c1", UserID: "alice"}
	ch := []string{"echo:alice"}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := m.Authorize(bg, "echo", caller, ch); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
