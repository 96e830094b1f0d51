package server

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

type fakeQueuer struct {
	queued int
	reads  *int
}

func (f *fakeQueuer) Queued() int {
	*f.reads++
	return f.queued
}

// The overload check reads the outboxes of a sample of the connections,
// not every one of them each tick (each read takes the connection's lock,
// which its publishers hold); up to the sample's size it reads them all.
func TestOverloadReadsASampleOfOutboxes(t *testing.T) {
	for _, conns := range []int{0, 1, overloadSample, 10_000} {
		reads := 0
		m := make(map[string]*fakeQueuer, conns)
		for i := range conns {
			m[strconv.Itoa(i)] = &fakeQueuer{queued: 30, reads: &reads}
		}
		sample := sampleOf(m, overloadSample, func(f *fakeQueuer) queuer { return f })
		ratio := sampleOutboxRatio(sample, 100)
		require.Equal(t, min(conns, overloadSample), reads, "%d connections", conns)
		if conns > 0 {
			require.InDelta(t, 0.3, ratio, 1e-9, "%d connections", conns)
		} else {
			require.Zero(t, ratio)
		}
	}
}

// The sample's mean fill is the queued items against what the sampled
// outboxes hold; no limit means no ratio.
func TestSampleOutboxRatio(t *testing.T) {
	reads := 0
	sample := []queuer{&fakeQueuer{queued: 100, reads: &reads}, &fakeQueuer{queued: 0, reads: &reads}}
	require.InDelta(t, 0.5, sampleOutboxRatio(sample, 100), 1e-9)
	require.Zero(t, sampleOutboxRatio(sample, 0))
}
