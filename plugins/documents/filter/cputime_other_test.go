//go:build !unix

package filter_test

import (
	"runtime/metrics"
	"time"
)

// cpuTimes reports no process CPU time here, only the runtime's estimate
// of the GC's.
func cpuTimes() (total, gc time.Duration) {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/gc/mark/idle:cpu-seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindFloat64 && s[1].Value.Kind() == metrics.KindFloat64 {
		gc = time.Duration((s[0].Value.Float64() - s[1].Value.Float64()) * float64(time.Second))
	}
	return 0, gc
}
