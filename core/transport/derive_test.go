package transport_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/transport"
)

// Options derived for connections opened after a reload carry the new
// bounds and still belong to the original publish groups: the end of a
// publish, announced on the original Options, releases a connection opened
// with derived ones.
func TestDerivedOptionsShareThePublishGroups(t *testing.T) {
	base := &transport.Options{MaxBatch: 128, MaxDelay: 10 * time.Millisecond, OutboxLimit: 100, WriteTimeout: 5 * time.Second}
	derived := base.Derive(&transport.Options{MaxBatch: 8, MaxDelay: time.Hour, OutboxLimit: 50, WriteTimeout: 5 * time.Second})
	require.Equal(t, 8, derived.MaxBatch)
	require.Equal(t, time.Hour, derived.MaxDelay)
	p := newRawPair(t, derived)
	for seq := uint64(1); seq <= 2; seq++ {
		pub := pubOf(seq, `{}`)
		pub.More = true // the publish goes on: held for the rest of it
		p.conn.Deliver(pub)
	}
	base.EndGroup() // the hub announces on the Options it was given
	require.Equal(t, []uint64{1, 2}, batchSeqs(t, p.client))
}
