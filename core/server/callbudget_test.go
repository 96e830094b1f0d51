package server

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// callBudget replaced golang.org/x/time/rate's Limiter (NewLimiter(r,
// max(1, int(r))).Allow): on the same calls at the same instants both
// allow the same ones, for whole and fractional rates, bursts and pauses.
func TestCallBudgetAllowsWhatRateLimiterAllows(t *testing.T) {
	for _, r := range []float64{0.5, 1, 2.5, 10, 50} {
		rng := rand.New(rand.NewPCG(1, uint64(r*10)))
		lim := rate.NewLimiter(rate.Limit(r), max(1, int(r)))
		var b callBudget
		start := time.Unix(1_000_000, 0)
		now := int64(1)
		allowed := 0
		for i := range 20_000 {
			// Steps in units of the refill interval, mostly shorter, so
			// that the budget runs out and refills in every way.
			interval := int64(float64(time.Second) / r)
			switch k := rng.IntN(1024); {
			case k < 512: // a burst: the same instant
			case k < 768:
				now += rng.Int64N(interval / 2)
			case k < 1000:
				now += rng.Int64N(2 * interval)
			case k < 1023:
				now += rng.Int64N(int64(max(1, r)) * interval) // up to a full refill
			default:
				now += rng.Int64N(int64(5 * time.Second)) // a pause
			}
			want := lim.AllowN(start.Add(time.Duration(now)), 1)
			require.Equal(t, want, b.allow(now, r), "rate %g, call %d at %v", r, i, time.Duration(now))
			if want {
				allowed++
			}
		}
		require.Greater(t, allowed, 0)
		require.Less(t, allowed, 20_000, "rate %g: some calls must be refused for the comparison to mean anything", r)
	}
}
