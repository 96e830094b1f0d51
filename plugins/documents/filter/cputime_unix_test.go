//go:build unix

package filter_test

import (
	"runtime/metrics"
	"syscall"
	"time"
)

// cpuTimes returns the CPU time used by the process so far, and the
// runtime's estimate of the part spent in the garbage collector (assists,
// dedicated and fractional mark workers, pauses).
func cpuTimes() (total, gc time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		total = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// Idle-time marking is left out: the runtime estimates it from wall
	// time, which overstates it when the machine is busy.
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/gc/mark/idle:cpu-seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindFloat64 && s[1].Value.Kind() == metrics.KindFloat64 {
		gc = time.Duration((s[0].Value.Float64() - s[1].Value.Float64()) * float64(time.Second))
	}
	return total, gc
}
