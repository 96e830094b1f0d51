package server

import (
	"math"
	"time"
)

// callBudget is a connection's token bucket for limits.calls_per_second:
// it holds up to max(1, ⌊rate⌋) calls, starts full and refills at rate
// calls per second; a call takes one, and a refused call takes nothing.
// That is golang.org/x/time/rate's Limiter.Allow, which it replaces
// because an idle connection kept two of those (80 bytes each, plus a
// pointer) where this is 16 bytes inside the session, guarded by its mutex.
type callBudget struct {
	tokens float64
	last   int64 // monoNow of the last call taken; 0: none yet (full)
}

// monoStart anchors monoNow; only differences of it are ever used.
var monoStart = time.Now()

// monoNow is the monotonic clock in nanoseconds, at least 1 (0 means
// "never" in callBudget).
func monoNow() int64 { return max(1, int64(time.Since(monoStart))) }

// allow takes one call at now if the budget has one at rate calls per
// second.
func (b *callBudget) allow(now int64, rate float64) bool {
	burst := math.Max(1, math.Floor(rate))
	tokens := burst
	if b.last != 0 {
		elapsed := max(0, now-b.last)
		tokens = math.Min(burst, b.tokens+time.Duration(elapsed).Seconds()*rate)
	}
	if tokens < 1 {
		return false
	}
	b.tokens, b.last = tokens-1, now
	return true
}
