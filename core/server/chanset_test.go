package server

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// chanSet behaves as the map it replaced, below and above chanSetFew
// channels and across the move from slice to map.
func TestChanSetIsASet(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 18))
	var set chanSet
	model := map[string]struct{}{}
	grew := false
	for i := range 5_000 {
		ch := "ch" + strconv.Itoa(rng.IntN(3*chanSetFew))
		switch rng.IntN(3) {
		case 0, 1:
			set.add(ch)
			model[ch] = struct{}{}
		default:
			_, want := model[ch]
			delete(model, ch)
			require.Equal(t, want, set.remove(ch), "step %d: remove %s", i, ch)
		}
		grew = grew || set.many != nil
		require.Equal(t, len(model), set.len(), "step %d", i)
		for _, probe := range []string{ch, "ch0", "none"} {
			_, want := model[probe]
			require.Equal(t, want, set.has(probe), "step %d: has %s", i, probe)
		}
		require.ElementsMatch(t, slices.Collect(maps.Keys(model)), slices.Collect(set.all()), "step %d", i)
	}
	require.True(t, grew, "the set never outgrew its slice")

	var small chanSet
	small.add("a")
	small.add("a")
	small.add("b")
	require.Equal(t, 2, small.len())
	require.True(t, small.remove("a"))
	require.False(t, small.remove("a"))
	require.Equal(t, []string{"b"}, slices.Collect(small.all()))
	require.True(t, small.remove("b"))
	require.Nil(t, small.few, "an emptied set keeps no array")
}
