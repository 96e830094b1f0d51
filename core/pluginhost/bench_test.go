package pluginhost_test

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
)

// BenchmarkEmit measures the event path across the process boundary: the
// emitter plugin (internal/testplugins/emitter, cmd/plugin-bench's) emits
// b.N small notifications to 100 channels from several goroutines at once,
// so the SDK batches them on its one stream; the host's recording Core
// acknowledges each batch. Two shapes: one notification per Emit call from
// many goroutines (the SDK must coalesce them), and 100 per call from a few.
// Reported: notifications/s (wall clock), and the CPU time per notification
// of the host process and of the plugin process (user + system), which
// stays meaningful on a shared machine where wall clock does not.
// HERALD_BENCH_PLUGIN_CPUPROFILE=path makes the plugin write a CPU profile
// there (the SDK honours HERALD_PLUGIN_CPUPROFILE).
//
// This is the recorder figure cmd/plugin-bench sets beside the whole path,
// so both run alike: the same plugin with the same parameters, and both
// processes warmed first with b.N notifications of the same shape,
// unmeasured, as plugin-bench's -warmup warms herald and the plugin.
// Only the Core differs.
func BenchmarkEmit(b *testing.B) {
	for _, c := range []struct{ workers, per int }{{512, 1}, {8, 100}} {
		b.Run(fmt.Sprintf("workers=%d/per=%d", c.workers, c.per), func(b *testing.B) {
			benchEmit(b, c.workers, c.per)
		})
	}
}

func benchEmit(b *testing.B, workers, per int) {
	core := newRecorder()
	core.keep = false
	m := newManager(b, core, nil)
	var env map[string]string
	if p := os.Getenv("HERALD_BENCH_PLUGIN_CPUPROFILE"); p != "" {
		env = map[string]string{"HERALD_PLUGIN_CPUPROFILE": fmt.Sprintf("%s.%d-%d", p, workers, per)}
	}
	if err := m.Apply(bg, []config.Plugin{block(b, "emitter", "emitter", env)}); err != nil {
		b.Fatal(err)
	}
	params := json.RawMessage(fmt.Sprintf(`{"count":%d,"channels":100,"workers":%d,"per":%d}`, b.N, workers, per))
	pluginCPU := func() time.Duration {
		r, err := m.Call(bg, "emitter", "cpu", pluginhost.Caller{Backend: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		var ns int64
		if err := json.Unmarshal(r, &ns); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ns)
	}
	if _, err := m.Call(bg, "emitter", "run", pluginhost.Caller{Backend: true}, params); err != nil {
		b.Fatal(err)
	}
	core.mu.Lock()
	core.count, core.batches = 0, 0
	core.mu.Unlock()
	p0, h0 := pluginCPU(), hostCPU(b)
	b.ResetTimer()
	start := time.Now()
	if _, err := m.Call(bg, "emitter", "run", pluginhost.Caller{Backend: true}, params); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	p1, h1 := pluginCPU(), hostCPU(b)
	if core.count != b.N {
		b.Fatalf("recorded %d of %d", core.count, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "notifications/s")
	b.ReportMetric(float64((h1-h0).Nanoseconds())/1e3/float64(b.N), "host-cpu-µs/n")
	b.ReportMetric(float64((p1-p0).Nanoseconds())/1e3/float64(b.N), "plugin-cpu-µs/n")
	b.ReportMetric(float64(b.N)/float64(core.batches), "n/batch")
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
