package transport

import (
	"testing"
	"time"
)

// TestSinceAtIsTimeSince: the latency of a write is measured from the
// clock read that also stamps its batch; it is time.Since as of that read,
// for an accept time with a monotonic reading and for one without.
func TestSinceAtIsTimeSince(t *testing.T) {
	accepted := time.Now()
	for _, a := range []time.Time{accepted, accepted.Round(0)} {
		before := time.Since(a)
		got := sinceAt(a, nanotime())
		after := time.Since(a)
		if got < before || got > after {
			t.Errorf("sinceAt(%v) = %v, not between time.Since before (%v) and after (%v)", a, got, before, after)
		}
	}
}
