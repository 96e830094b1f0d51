package broker

import (
	"math"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"
)

// A run of ids is consecutive within a millisecond, the next run goes on
// from it, a later millisecond starts afresh with the top entropy bit clear,
// and a clock that goes back does not make ids repeat or go back.
func TestIDsAreMonotonic(t *testing.T) {
	g := newIDs()
	var all []ulid.ULID
	take := func(ms uint64, k int) {
		s := g.reserve(ms, k)
		for range k {
			all = append(all, s.next())
		}
	}
	take(1000, 3)
	take(1000, 2) // same millisecond
	take(1001, 4) // a later one
	take(999, 2)  // the clock went back
	take(1001, 1) // still not later than the last id
	take(1002, 1)
	for i := 1; i < len(all); i++ {
		require.Negative(t, all[i-1].Compare(all[i]), "id %d (%s) must follow id %d (%s)", i, all[i], i-1, all[i-1])
	}
	require.Equal(t, uint64(1000), all[0].Time())
	require.Equal(t, uint64(1000), all[4].Time())
	require.Equal(t, uint64(1001), all[5].Time())
	require.Equal(t, uint64(1001), all[9].Time(), "a clock that went back keeps the last id's time")
	require.Equal(t, uint64(1002), all[len(all)-1].Time())
	e := all[5].Entropy()
	require.Zero(t, e[0]&0x80, "a millisecond's first id leaves room to count up")
}

// Entropy that overflows its 80 bits carries into the time, so that ids
// still never repeat.
func TestIDsCarry(t *testing.T) {
	s := idSeq{ms: 7, hi: math.MaxUint16, lo: math.MaxUint64 - 1}
	a, b, c := s.next(), s.next(), s.next()
	require.Negative(t, a.Compare(b))
	require.Negative(t, b.Compare(c))
	require.Equal(t, uint64(8), c.Time())
}

// IDSource is ids for other brokers: its runs follow each other, and two
// sources (two nodes) asked at the same millisecond give different ids.
func TestIDSource(t *testing.T) {
	a, b := NewIDSource(), NewIDSource()
	ra, rb := a.Reserve(5000, 2), b.Reserve(5000, 1)
	x, y, z := ra.Next(), ra.Next(), rb.Next()
	require.Negative(t, x.Compare(y))
	require.NotEqual(t, x, z)
	require.NotEqual(t, y, z)
	next := a.Reserve(5000, 1)
	require.Negative(t, y.Compare(next.Next()))
	before := a.Reserve(-1, 1) // a clock before 1970 goes on from the last id
	require.Equal(t, uint64(5000), before.Next().Time())
}
